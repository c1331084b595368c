"""`_quant` checkpoints restored as the fake-quant network they were trained as.

The checkpoint is made here from the vendored real uint8 ``mobilenet_v1_0.25_128_quant.tflite``
(``real_weights.write_quant_checkpoint``): its folded weights, unfolded again through random
batch-norm statistics, and ranges from its scales and zero points, under contrib.quantize's
names. Three independent judges:

* the logits' grid: every logit of a fake-quant network is ``min + k * (max - min) / 255``;
* a fake-quant network written below with plain TF ops from the TFLite file's own numbers
  (nothing from ``zoo``);
* the uint8 ``.tflite`` itself, in top-1 on the real photos.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf

import zoo  # noqa: E402
from zoo.errors import RestoreError  # noqa: E402

from . import real_weights  # noqa: E402
from .conftest import console_script  # noqa: E402
from .test_eval import photos, write_synset_folders  # noqa: E402,F401  (photos: a fixture)

DATA = Path(__file__).resolve().parent / "data"
ENTRY = real_weights.QUANT_CATALOG_ID
LOGITS_LAYER = "conv_preds"  # its output: the logits, after their fake-quant op


@pytest.fixture(scope="module")
def quant_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("v1_quant")
    real_weights.write_quant_checkpoint(directory)
    return directory


@pytest.fixture(scope="module")
def prefix(quant_dir) -> Path:
    return quant_dir / f"{real_weights.QUANT_STEM}.ckpt"


@pytest.fixture(scope="module")
def restored(prefix):
    return zoo.restore(prefix, "ckpt", entry=ENTRY)


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    random = np.random.default_rng(0).uniform(-1, 1, (3, 128, 128, 3)).astype(np.float32)
    return np.concatenate([random, _photo("cat.bmp"), _photo("bird.bmp")])


def _photo(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(DATA / name) as img:
        pixels = np.asarray(img.convert("RGB").resize((128, 128), Image.BILINEAR), np.float32)
    return (pixels / 127.5 - 1.0)[None]


def _logits(keras_model, layer: str, images: np.ndarray) -> np.ndarray:
    import keras

    head = keras.Model(keras_model.input, keras_model.get_layer(layer).output)
    return np.asarray(head(images)).reshape(len(images), -1)


def _on_grid(values: np.ndarray, low: float, high: float) -> np.ndarray:
    codes = (values - low) / ((high - low) / 255.0)
    return np.abs(codes - np.round(codes)) < 1e-3


def reference_fake_quant(images: np.ndarray) -> np.ndarray:
    """The independent fake-quant network (plain TF ops), run eagerly."""
    return real_weights.fake_quant_forward(tf, tf.constant(images)).numpy()


# ----------------------------------------------------------------------------- faithful restore
def test_logits_lie_on_the_grid_of_their_range(restored, prefix, inputs):
    low, high = real_weights.quant_layers()[-1].act_range
    assert _on_grid(_logits(restored.keras_model, LOGITS_LAYER, inputs), low, high).all()
    # the float model of the same checkpoint lands there by chance only
    float_model = zoo.restore(prefix, "ckpt", entry=ENTRY, fake_quant=False)
    assert _on_grid(_logits(float_model.keras_model, "conv_preds", inputs), low, high).mean() < 0.05
    assert not float_model.summary()["fake_quant"]
    assert any("float model (fake-quant ranges skipped)" in n for n in float_model.summary()["notes"])


def test_matches_an_independent_fake_quant_network(restored, inputs):
    expected = reference_fake_quant(inputs)
    got = restored(inputs)
    # measured: identical (0.0); a one-step flip of an activation at a rounding edge would be
    # the most float summation order could cause, a wrong fold, range or rounding moves far more
    assert np.abs(got - expected).max() < 1e-6
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_agrees_with_the_tarballs_frozen_fake_quant_graph(restored, quant_dir, inputs):
    graph = zoo.restore(quant_dir / f"{real_weights.QUANT_STEM}_frozen.pb", "frozen", entry=ENTRY)
    np.testing.assert_allclose(restored(inputs), graph(inputs), rtol=0, atol=1e-6)


def test_the_frozen_graph_picks_the_weight_set(tmp_path, inputs):
    """A checkpoint with moving averages: the set reproducing the frozen fake-quant graph wins."""
    directory = tmp_path / "with_shadows"
    prefix = real_weights.write_quant_checkpoint(
        directory, arrays=real_weights.quant_checkpoint_arrays(shadows=True))
    graph = zoo.restore(directory / f"{real_weights.QUANT_STEM}_frozen.pb", "frozen", entry=ENTRY)(inputs)
    chosen = zoo.restore(prefix, "ckpt", entry=ENTRY)
    assert chosen.weights == "raw" and chosen.summary()["fake_quant"]
    assert any(f"reproduces {real_weights.QUANT_STEM}_frozen.pb" in n for n in chosen.notes)
    np.testing.assert_allclose(chosen(inputs), graph, rtol=0, atol=1e-6)
    averages = zoo.restore(prefix, "ckpt", entry=ENTRY, weights="ema")
    assert np.abs(averages(inputs) - graph).max() > 1e-3


def test_top1_agrees_with_the_uint8_tflite_on_real_photos(restored, quant_dir):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(quant_dir / f"{real_weights.QUANT_STEM}.tflite"))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    for name in ("cat.bmp", "bird.bmp"):
        x = _photo(name)
        interpreter.set_tensor(inp["index"], np.clip(np.round(x / scale) + zero, 0, 255).astype(np.uint8))
        interpreter.invoke()
        assert int(restored(x).argmax()) == int(interpreter.get_tensor(out["index"]).argmax()), name


def test_summary_names_the_quantization_points(restored):
    summary = restored.summary()
    assert summary["fake_quant"] is True
    points = summary["quantization_points"]
    assert len(points) == 28 and points[0] == "Conv2d_0" and points[-1] == "Logits/Conv2d_1c_1x1"
    assert "MobilenetV1/MobilenetV1/Conv2d_0/act_quant/min" in summary["used"]
    assert "MobilenetV1/Logits/Conv2d_1c_1x1/weights_quant/max" in summary["used"]
    assert len(summary["skipped"]["moving_average_slot"]) == 28 * 4  # .../biased, .../local_step
    assert any(n.startswith("fake-quant ranges applied at 28 points") for n in summary["notes"])


def test_export_keeps_the_fake_quant_network(restored, inputs, tmp_path):
    saved = restored.export(tmp_path / "saved")
    loaded = tf.saved_model.load(str(saved))
    signature = loaded.signatures["serving_default"]
    got = next(iter(signature(tf.constant(inputs)).values())).numpy()
    np.testing.assert_allclose(got, restored(inputs), atol=1e-6)


# ----------------------------------------------------------------------------- the console script
def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=300)


def test_cli_restore_says_the_ranges_were_applied(prefix):
    done = _run("restore", str(prefix), "--format", "ckpt")
    assert done.returncode == 0, done.stderr
    assert "fake-quant ranges applied at 28 points" in done.stdout
    assert "Conv2d_13_pointwise" in done.stdout
    plain = _run("restore", str(prefix), "--format", "ckpt", "--no-fake-quant", "--json")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["fake_quant"] is False


def test_cli_eval_measures_the_fake_quant_network(prefix, quant_dir, photos, tmp_path):  # noqa: F811
    """eval --format ckpt is the seed's eval --quantize; --compare tflite runs the uint8 file
    beside it on the same images (the .tflite found next to the checkpoint)."""
    data = write_synset_folders(tmp_path / "data", photos)
    tflite = quant_dir / f"{real_weights.QUANT_STEM}.tflite"
    alone = _run("eval", str(tflite), "--data", str(data), "--json")
    assert alone.returncode == 0, alone.stderr
    done = _run("eval", str(prefix), "--format", "ckpt", "--compare", "tflite", "--data", str(data), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["format"], result["compared"]["format"]) == ("ckpt", "tflite")
    assert result["compared"]["runtime"] == "litert"
    assert result["images"] == result["compared"]["images"] == len(photos)
    assert result["compared"]["top1"] == json.loads(alone.stdout)["top1"]
    assert result["top1"] == result["compared"]["top1"]
    assert result["top1_agreement"] == 100.0
    assert json.loads(alone.stdout)["compared"] is None

    summary = _run("eval", str(prefix), "--format", "ckpt", "--compare", "tflite", "--data", str(data))
    assert summary.returncode == 0, summary.stderr
    assert "the two agree on top-1 for 100.0% of the images" in summary.stdout
    header = next(line for line in summary.stdout.splitlines() if "catalog" in line)
    assert header.index("ckpt") < header.index("tflite") < header.index("catalog")


def test_cli_eval_compare_refuses_what_it_cannot_compare(prefix, photos, tmp_path):  # noqa: F811
    data = write_synset_folders(tmp_path / "data", photos)
    same = _run("eval", str(prefix), "--format", "ckpt", "--compare", "ckpt", "--data", str(data))
    assert same.returncode != 0 and "Traceback" not in same.stderr
    assert "the format being evaluated" in same.stderr
    alone = tmp_path / "alone"
    alone.mkdir()
    for part in prefix.parent.glob(prefix.name + ".*"):
        (alone / part.name).write_bytes(part.read_bytes())
    missing = _run("eval", str(alone / prefix.name), "--format", "ckpt", "--compare", "tflite", "--data", str(data))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "--compare tflite" in missing.stderr and str(alone) in missing.stderr, missing.stderr
    assert "beside the model evaluated" in missing.stderr  # said before the checkpoint is run at all


# ----------------------------------------------------------------------------- bad checkpoints
def _broken(tmp_path: Path, change) -> Path:
    arrays = real_weights.quant_checkpoint_arrays()
    change(arrays)
    return real_weights.write_quant_checkpoint(tmp_path, arrays=arrays)


def test_a_missing_range_is_named(tmp_path):
    name = "MobilenetV1/MobilenetV1/Conv2d_5_pointwise/act_quant/max"
    broken = _broken(tmp_path, lambda a: a.pop(name))
    with pytest.raises(RestoreError, match="Conv2d_5_pointwise/act_quant/max") as info:
        zoo.restore(broken, "ckpt", entry=ENTRY)
    assert "--no-fake-quant" in info.value.hint
    done = _run("restore", str(broken), "--format", "ckpt")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no fake-quant range" in done.stderr and "Conv2d_5_pointwise" in done.stderr


def test_a_range_with_min_above_max_is_refused(tmp_path):
    def swap(arrays):
        base = "MobilenetV1/MobilenetV1/Conv2d_3_depthwise/weights_quant"
        arrays[f"{base}/min"], arrays[f"{base}/max"] = arrays[f"{base}/max"], arrays[f"{base}/min"]

    broken = _broken(tmp_path, swap)
    done = _run("restore", str(broken), "--format", "ckpt")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "Conv2d_3_depthwise/weights_quant has min" in done.stderr


def test_a_non_finite_range_is_refused(tmp_path):
    broken = _broken(tmp_path, lambda a: a.__setitem__(
        "MobilenetV1/Logits/Conv2d_1c_1x1/act_quant/min", np.float32(np.nan)))
    with pytest.raises(RestoreError, match="Conv2d_1c_1x1/act_quant/min' is nan"):
        zoo.restore(broken, "ckpt", entry=ENTRY)


def test_fake_quant_of_a_float_model_is_refused(tmp_path):
    prefix = real_weights.write_checkpoint(tmp_path)
    with pytest.raises(RestoreError, match="is a float model"):
        zoo.restore(prefix, "ckpt", entry=real_weights.CATALOG_ID, fake_quant=True)


# ----------------------------------------------------------------------------- int8 from its own ranges
def test_export_int8_from_the_checkpoints_own_ranges(prefix, quant_dir, restored, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "q.tflite"
    done = _run("export", str(prefix), "--to", "tflite", "--quantize", "int8", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ranges"] == "the model's fake-quant ranges" and result["calibration_images"] == 0
    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (0.0078125, 128)  # the published input
    assert {t["dtype"] for t in interpreter.get_tensor_details()} <= {np.uint8, np.int32}  # nothing float
    assert not any(op["op_name"] == "FAKE_QUANT" for op in interpreter._get_ops_details())
    published = Interpreter(model_path=str(quant_dir / f"{real_weights.QUANT_STEM}.tflite"))
    published.allocate_tensors()
    for name in ("cat.bmp", "bird.bmp"):
        codes = np.clip(np.round(_photo(name) / 0.0078125) + 128, 0, 255).astype(np.uint8)
        tops = []
        for model in (interpreter, published):
            model.set_tensor(model.get_input_details()[0]["index"], codes)
            model.invoke()
            tops.append(int(model.get_tensor(model.get_output_details()[0]["index"]).argmax()))
        assert tops[0] == tops[1] == int(restored(_photo(name)).argmax()), name
    # the ranges really are the checkpoint's: the first conv's weights carry Conv2d_0's range
    low, high = real_weights.quant_layers()[0].weights_range
    scales = [t["quantization"][0] for t in interpreter.get_tensor_details()
              if t["dtype"] == np.uint8 and len(t["shape"]) == 4 and t["shape"][-1] == 3]
    assert any(abs(s - (high - low) / 254) < 1e-6 for s in scales)


# ----------------------------------------------------------------------------- v2: bypass quantization
@pytest.fixture(scope="module")
def v2_prefix(tmp_path_factory) -> Path:
    from . import real_weights_v2

    if not real_weights_v2.TFLITE.exists():
        pytest.skip(f"needs the real uint8 v2 file {real_weights_v2.TFLITE} (../shared, this workplace only)")
    return real_weights_v2.write_checkpoint(tmp_path_factory.mktemp("v2_quant"))


@pytest.fixture(scope="module")
def v2_restored(v2_prefix):
    from . import real_weights_v2

    return zoo.restore(v2_prefix, "ckpt", entry=real_weights_v2.CATALOG_ID)


def _photo_224(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(DATA / name) as img:
        pixels = np.asarray(img.convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
    return (pixels / 127.5 - 1.0)[None]


def test_v2_logits_and_bypass_adds_lie_on_their_grids(v2_restored):
    from . import real_weights_v2

    layers, adds = real_weights_v2.read_layers()
    images = np.concatenate([_photo_224("cat.bmp"), _photo_224("bird.bmp")])
    summary = v2_restored.summary()
    assert summary["fake_quant"] and len(summary["quantization_points"]) == len(layers) + len(adds) == 63
    # Keras' v2 classifier is one Dense layer with its softmax: differences of log-probabilities
    # are differences of logits, which lie on the grid's step
    low, high = layers[-1].output_range
    log_p = np.log(v2_restored(images).astype(np.float64))
    steps = (log_p - log_p.max(axis=1, keepdims=True)) / ((high - low) / 255.0)
    assert (np.abs(steps - np.round(steps)) < 1e-2).all()
    for block, keras_name in (("expanded_conv_2", "block_2_add"), ("expanded_conv_15", "block_15_add")):
        assert _on_grid(_logits(v2_restored.keras_model, keras_name, images), *adds[block]).all(), block


def test_v2_top1_agrees_with_the_uint8_tflite(v2_restored):
    from ai_edge_litert.interpreter import Interpreter

    from . import real_weights_v2

    interpreter = Interpreter(model_path=str(real_weights_v2.TFLITE))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for name in ("cat.bmp", "bird.bmp"):
        x = _photo_224(name)
        interpreter.set_tensor(inp["index"], np.clip(np.round(x * 128) + 128, 0, 255).astype(np.uint8))
        interpreter.invoke()
        assert int(v2_restored(x).argmax()) == int(interpreter.get_tensor(out["index"]).argmax()), name


def test_v2_int8_export_has_the_published_files_scales(v2_prefix, tmp_path):
    """The uint8 file made from the checkpoint's ranges quantizes every conv's weights and output
    exactly as the published file does (same scales, same zero points)."""
    from ai_edge_litert.interpreter import Interpreter

    from . import real_weights_v2

    out = tmp_path / "v2.tflite"
    done = _run("export", str(v2_prefix), "--to", "tflite", "--quantize", "int8", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr

    def conv_quantization(path: Path) -> list:
        interpreter = Interpreter(model_path=str(path))
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        found = []
        for op in interpreter._get_ops_details():
            if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED"):  # FC: Keras' classifier
                ids = [op["inputs"][1], op["outputs"][0]] if op["op_name"] != "ADD" else [op["outputs"][0]]
                found.append([(round(tensors[i]["quantization"][0], 7), tensors[i]["quantization"][1]) for i in ids])
        return found

    ours = conv_quantization(out)
    assert len(ours) == 36 + 17 + 10 and ours == conv_quantization(real_weights_v2.TFLITE)
