"""ONNX Runtime and OpenVINO beside LiteRT and TensorFlow (issue 18), with real models.

The vendored real uint8 v1 0.25_128 `.tflite` and photos run through every runtime and are
compared with LiteRT's answers; a float model built with upstream's variable names (its
checkpoint restored and converted to .tflite by tests/slim_builders.py) is exported to ONNX
and to OpenVINO IR through the console script and compared; bad input is refused by name.
A runtime package that is missing skips its tests with the reason; CI installs both
(`.[tf,onnx,openvino,test]`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .conftest import DATA, console_script

pytestmark = pytest.mark.tf
TFLITE = DATA / "mobilenet_v1_0.25_128_quant.tflite"
PHOTOS = [DATA / "cat.bmp", DATA / "bird.bmp"]
MODEL_ID = "v1_0.25_128_quant"
ONE_STEP = 1 / 256 + 1e-6  # the uint8 output's quantization step (scale 0.00390625)


def needs(runtime: str):
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}[runtime]
    return pytest.importorskip(module, reason=f"{module} is not installed (the [{'onnx' if runtime == 'onnxruntime' else 'openvino'}] extra)")


def zoo(*args: str, expect: int | None = 0, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "COLUMNS": "200", **(env or {})})
    if expect is not None:
        assert result.returncode == expect, (result.stdout, result.stderr)
    if result.returncode:
        assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def images():
    from zoo.data.images import load_images

    return load_images([str(p) for p in PHOTOS], (128, 128, 3))


@pytest.fixture(scope="module")
def litert_answers(images):
    from zoo.formats import restore

    return restore(TFLITE)(images)


# ----------------------------------------------------------------------------- the real uint8 model
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_real_uint8_model_answers_like_litert(runtime, images, litert_answers):
    needs(runtime)
    from zoo.formats import restore

    model = restore(TFLITE, runtime=runtime, threads=1)
    assert (model.runtime, model.format) == (runtime, "tflite")
    probs = model(images)
    assert probs.shape == litert_answers.shape == (2, 1001)
    assert list(probs.argmax(1)) == list(litert_answers.argmax(1))
    # ONNX Runtime keeps the integer arithmetic (within one output step); OpenVINO computes the
    # dequantized graph in f32 (a few steps).
    assert np.abs(probs - litert_answers).max() <= (ONE_STEP if runtime == "onnxruntime" else 0.05)
    info = model.summary()
    assert info["runtime"] == runtime and info["input_dtype"] == "uint8"
    assert info["input_quantization"] == {"scale": 0.0078125, "zero_point": 128}
    if runtime == "openvino":
        assert info["precision"] == "f32" and info["device"] == "CPU"
    copy = model.copy()  # eval runs one-thread copies side by side
    assert np.array_equal(copy(images), probs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The real uint8 model exported to ONNX and to IR through the console script."""
    needs("onnxruntime")
    needs("openvino")
    out = tmp_path_factory.mktemp("exported")
    photos = out / "photos"
    photos.mkdir()
    for p in PHOTOS:
        (photos / p.name).write_bytes(p.read_bytes())
    onnx = zoo("export", str(TFLITE), "--to", "onnx", "--out", str(out / "q.onnx"), "--calibration", str(photos),
               "--json")
    ir = zoo("export", str(TFLITE), "--to", "openvino", "--out", str(out / "q.xml"), "--json")
    return out, json.loads(onnx.stdout), json.loads(ir.stdout)


def test_export_records_the_check_and_the_versions(exported):
    import onnx
    import openvino
    import tf2onnx

    out, onnx_result, ir_result = exported
    assert onnx_result["check"]["kind"] == "calibration" and onnx_result["check"]["images"] == 2
    assert onnx_result["top1_agreement"] == 100.0 and onnx_result["max_abs_dp"] <= ONE_STEP
    assert ir_result["check"]["kind"] == "synthetic" and ir_result["check"]["images"] == 16
    assert sorted(p.name for p in out.iterdir()) == ["photos", "q.bin", "q.onnx", "q.onnx.zoo.json", "q.xml",
                                                     "q.xml.zoo.json"]
    card = json.loads((out / "q.onnx.zoo.json").read_text())
    assert card["model"] == MODEL_ID
    conversion = card["conversion"]
    assert conversion["versions"] == {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "opset": "17"}
    import hashlib

    assert conversion["from_sha256"] == hashlib.sha256(TFLITE.read_bytes()).hexdigest()
    assert conversion["check"]["runtime"] == "onnxruntime" and not conversion["forced"]
    ir_card = json.loads((out / "q.xml.zoo.json").read_text())["conversion"]
    assert ir_card["versions"] == {"openvino": openvino.__version__}


@pytest.mark.parametrize("name, runtime", [("q.onnx", None), ("q.onnx", "openvino"), ("q.xml", None)])
def test_exported_files_classify_like_the_tflite(exported, name, runtime):
    out = exported[0]
    args = ["--runtime", runtime] if runtime else []
    got = json.loads(zoo("classify", str(out / name), *map(str, PHOTOS), "--json", *args).stdout)
    want = json.loads(zoo("classify", str(TFLITE), *map(str, PHOTOS), "--json").stdout)
    assert [r["predictions"][0]["index"] for r in got] == [r["predictions"][0]["index"] for r in want]
    assert {r["predictions"][0]["label"] for r in got} == {r["predictions"][0]["label"] for r in want}


def test_restore_of_an_ir_states_runtime_precision_and_threads(exported):
    text = zoo("restore", str(exported[0] / "q.xml"), "--threads", "1").stdout
    assert "runtime     openvino" in text and "on CPU" in text
    assert "precision   f32" in text and "threads     1" in text
    info = json.loads(zoo("restore", str(exported[0] / "q.xml"), "--json").stdout)
    assert info["format"] == "openvino" and info["id"] == MODEL_ID


def test_a_float_checkpoint_model_exports_to_onnx_and_openvino(tmp_path):
    """A float v1 0.25_128 with upstream's variable and file names (random weights): its
    checkpoint restored in Keras, its .tflite (frozen from the same graph) exported both ways
    through the API, and every runtime's answers compared with the checkpoint's."""
    needs("onnxruntime")
    needs("openvino")
    from tests import slim_builders
    from zoo.formats import restore
    from zoo.training.export import export_model

    built = slim_builders.write_v1_model(tmp_path / "v1", width=0.25, resolution=128)
    assert built.tflite.name == "mobilenet_v1_0.25_128.tflite"  # upstream's name: the catalog's v1_0.25_128
    images = built.images
    want = restore(built.checkpoint, "ckpt", entry=built.entry, weights="raw")(images)
    for to, name in (("onnx", "f.onnx"), ("openvino", "f.xml")):
        result = export_model(built.tflite, to, tmp_path / name)
        assert result.model == "v1_0.25_128" and result.top1_agreement == 100.0 and result.max_abs_dp < 1e-4
        for runtime in (["onnxruntime", "openvino"] if to == "onnx" else ["openvino"]):
            model = restore(tmp_path / name, runtime=runtime)
            assert model.entry.id == "v1_0.25_128"  # the card says which model the file is
            got = model(images)
            assert np.abs(got - want).max() < 1e-4 and list(got.argmax(1)) == list(want.argmax(1))


# ----------------------------------------------------------------------------- bench, pick, eval
def test_bench_all_then_pick_by_runtime(tmp_path):
    needs("onnxruntime")
    needs("openvino")
    rows = json.loads(zoo("bench", str(TFLITE), "--runtime", "all", "--runs", "5", "--warmup", "1", "--json").stdout)
    assert [(r["runtime"], r["format"]) for r in rows] == [("litert", "tflite"), ("onnxruntime", "tflite"),
                                                           ("openvino", "tflite")]
    assert rows[0]["max_abs_dp"] == 0 and all(r["top1_agreement"] == 100.0 for r in rows)
    assert rows[2]["precision"] == "f32" and rows[1]["precision"] is None
    show = zoo("show", MODEL_ID).stdout
    for device in ("local-litert", "local-onnxruntime", "local-openvino", "local-fastest",
                   "local-openvino-tflite-1t", "local-tflite-1t"):
        assert device in show
    fastest = min(rows, key=lambda r: r["median_ms"])
    for runtime, row in (("openvino", rows[2]), ("any", fastest), ("onnxruntime", rows[1])):
        picked = json.loads(zoo("pick", "--device", "local", "--runtime", runtime, "--max-latency-ms", "1000",
                                "--json").stdout)
        assert picked["id"] == MODEL_ID
        device = "local-fastest" if runtime == "any" else f"local-{runtime}"
        assert picked["latency_ms"][device] == pytest.approx(row["median_ms"], rel=1e-3)
    front = zoo("frontier", "--cost", "latency", "--device", "local", "--runtime", "openvino").stdout
    assert MODEL_ID in front
    text = zoo("bench", str(TFLITE), "--runtime", "all", "--runs", "3", "--warmup", "0")
    assert "*" in text.stdout and "fastest" in text.stderr


def test_pick_runtime_errors(tmp_path):
    failed = zoo("pick", "--device", "local", "--runtime", "openvino", expect=2)
    assert "nothing measured on openvino here yet" in failed.stderr and "bench MODEL --runtime openvino" in failed.stderr
    failed = zoo("pick", "--device", "pixel1", "--runtime", "openvino", expect=2)
    assert "does not apply to --device pixel1" in failed.stderr


def test_profile_groups_figures_by_runtime(tmp_path):
    from zoo.catalog.profile import read_local_latencies, record

    path = tmp_path / "p.json"
    record("m", "tflite", 1, 3.0, 3.5, path, runtime="litert")
    record("m", "tflite", 1, 1.7, 1.9, path, runtime="openvino", own_runtime=False)
    record("m", "tflite", 2, 2.5, 2.9, path, runtime="litert")
    data = json.loads(path.read_text())
    data["measurements"]["m"]["local-x-tflite-9t"] = {"median_ms": "inf", "runtime": ["junk"]}
    data["measurements"]["m"]["local-y-tflite-9t"] = {"median_ms": 0.5, "runtime": "../evil name"}
    data["measurements"]["m"]["local-fastest"] = {"median_ms": 0.001}  # a planted summary is not a figure
    path.write_text(json.dumps(data))
    got = read_local_latencies(path)["m"]
    assert got["local-litert"] == 2.5 and got["local-openvino"] == 1.7  # latest per runtime
    assert got["local-openvino-tflite-1t"] == 1.7 and got["local-tflite-1t"] == 3.0
    assert got["local-fastest"] == 0.5 and "local-../evil name" not in got
    assert "local-x-tflite-9t" not in got


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The two photos in ILSVRC synset folders (hand labels: tabby cat, chickadee)."""
    root = tmp_path_factory.mktemp("val")
    for photo, synset in zip(PHOTOS, ("n02123045", "n01592084")):
        (root / synset).mkdir()
        (root / synset / photo.name).write_bytes(photo.read_bytes())
    return root


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_eval_on_another_runtime_matches_litert(runtime, labelled):
    needs(runtime)
    want = json.loads(zoo("eval", str(TFLITE), "--data", str(labelled), "--json").stdout)
    got = json.loads(zoo("eval", str(TFLITE), "--data", str(labelled), "--json", "--runtime", runtime,
                         "--threads", "2").stdout)
    assert got["runtime"] == runtime and want["runtime"] == "litert"
    assert (got["top1"], got["top5"], got["images"]) == (want["top1"], want["top5"], want["images"])


# ----------------------------------------------------------------------------- bad input
def test_a_runtime_that_is_not_installed(tmp_path):
    """The package's import fails (a shadowing package that raises ImportError, as a missing one does)."""
    for module in ("onnxruntime", "openvino"):
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text(f'raise ImportError("No module named {module!r}")\n')
    env = {"PYTHONPATH": str(tmp_path)}
    for runtime, extra in (("onnxruntime", "onnx"), ("openvino", "openvino")):
        failed = zoo("classify", str(TFLITE), str(PHOTOS[0]), "--runtime", runtime, expect=None, env=env)
        assert failed.returncode != 0
        assert f"needs {runtime}, which is not installed" in failed.stderr
        assert f"pip install '.[{extra}]'" in failed.stderr or f"mobilenet-zoo[{extra}]" in failed.stderr


def test_formats_a_runtime_does_not_run(tmp_path):
    failed = zoo("restore", MODEL_ID, "--format", "ckpt", "--runtime", "onnxruntime", expect=2)  # before a fetch
    assert "--runtime onnxruntime does not run ckpt files" in failed.stderr and "--format tflite" in failed.stderr
    failed = zoo("classify", str(TFLITE), str(PHOTOS[0]), "--precision", "bf16", expect=2)
    assert "--precision applies to --runtime openvino, not to litert" in failed.stderr
    failed = zoo("bench", MODEL_ID, "--runtime", "all", "--format", "tflite", expect=2)
    assert "--runtime all times every file the model has; leave --format out" in failed.stderr


def test_an_openvino_device_that_does_not_exist():
    needs("openvino")
    failed = zoo("classify", str(TFLITE), str(PHOTOS[0]), "--runtime", "openvino", "--openvino-device", "NPU7",
                 expect=2)
    assert "OpenVINO has no device 'NPU7'" in failed.stderr and "--openvino-device" in failed.stderr and "CPU" in failed.stderr


def test_damaged_onnx_and_ir_files(exported, tmp_path):
    out = exported[0]
    for name in ("q.onnx", "q.xml"):
        damaged = tmp_path / name
        data = (out / name).read_bytes()
        damaged.write_bytes(data[: len(data) // 3])
        (tmp_path / (name + ".zoo.json")).write_bytes((out / (name + ".zoo.json")).read_bytes())
    (tmp_path / "q.bin").write_bytes((out / "q.bin").read_bytes())
    failed = zoo("classify", str(tmp_path / "q.onnx"), str(PHOTOS[0]), expect=1)
    assert "ONNX Runtime cannot load" in failed.stderr and "q.onnx" in failed.stderr
    failed = zoo("classify", str(tmp_path / "q.onnx"), str(PHOTOS[0]), "--runtime", "openvino", expect=1)
    assert "q.onnx" in failed.stderr
    failed = zoo("classify", str(tmp_path / "q.xml"), str(PHOTOS[0]), expect=1)
    assert "OpenVINO cannot read" in failed.stderr and "q.xml" in failed.stderr
    (tmp_path / "q.xml").write_bytes((out / "q.xml").read_bytes())
    (tmp_path / "q.bin").write_bytes((out / "q.bin").read_bytes()[:1000])  # weights cut short
    failed = zoo("classify", str(tmp_path / "q.xml"), str(PHOTOS[0]), expect=1)
    assert "q.xml" in failed.stderr
    (tmp_path / "q.bin").unlink()
    failed = zoo("classify", str(tmp_path / "q.xml"), str(PHOTOS[0]), expect=1)
    assert "no weights file q.bin beside it" in failed.stderr


@pytest.mark.parametrize("metadata, why", [
    (None, "does not say its quantization"),
    ("not json", "is not a JSON object"),
    (json.dumps({"input": {"dtype": "uint8", "scale": -1, "zero_point": 128}}), "no valid input quantization"),
    (json.dumps({"input": {"dtype": "uint8", "scale": 0.0078125, "zero_point": 999}}), "no valid input quantization"),
    (json.dumps({"input": {"dtype": "uint8", "scale": float("nan"), "zero_point": 1}}), "no valid input quantization"),
    (json.dumps({"input": {"dtype": "int8", "scale": 0.1, "zero_point": 1},
                 "output": {"dtype": "uint8", "scale": 0.1, "zero_point": 0}}), "does not say its quantization"),
])
def test_onnx_files_that_lie_about_their_integer_ends(exported, tmp_path, metadata, why):
    import onnx

    from zoo.formats.ends import METADATA_KEY

    proto = onnx.load(str(exported[0] / "q.onnx"))
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if metadata is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, metadata
    target = tmp_path / f"{MODEL_ID}.onnx"
    onnx.save(proto, str(target))
    for runtime in ("onnxruntime", "openvino"):
        failed = zoo("classify", str(target), str(PHOTOS[0]), "--runtime", runtime, expect=1)
        assert why in failed.stderr and str(target) in failed.stderr


def one_op_tflite(folder: Path, features) -> Path:
    """A real .tflite named as a catalog model: ``features(tf, images)`` gives 3 numbers per image,
    a fixed random layer turns them into 1001 class probabilities."""
    from zoo._util.runtime_logs import import_tensorflow

    tf = import_tensorflow()
    weights = tf.constant(np.random.default_rng(0).normal(size=(3, 1001)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 128, 128, 3], tf.float32)])
    def model(x):
        return tf.nn.softmax(tf.matmul(features(tf, x), weights))

    path = folder / "v1_0.25_128.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model).convert())
    return path


@pytest.fixture(scope="module")
def unconvertible(tmp_path_factory):
    """An op (RFFT2D) OpenVINO's TFLite frontend lacks."""
    return one_op_tflite(tmp_path_factory.mktemp("fft"), lambda tf, x: tf.reduce_mean(
        tf.abs(tf.signal.rfft2d(tf.transpose(x, [0, 3, 1, 2]))), axis=[2, 3]))


def test_a_conversion_that_fails_writes_nothing(unconvertible, tmp_path):
    needs("openvino")
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    out = tmp_path / "m.xml"
    failed = zoo("export", str(unconvertible), "--to", "openvino", "--out", str(out), expect=1)
    assert "OpenVINO cannot convert" in failed.stderr and "RFFT2D" in failed.stderr
    assert "--runtime litert or onnxruntime" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    failed = zoo("classify", str(unconvertible), str(PHOTOS[0]), "--runtime", "openvino", expect=1)
    assert "RFFT2D" in failed.stderr


def test_a_conversion_below_the_threshold_is_refused_unless_forced(tmp_path, monkeypatch):
    """OpenVINO moves the uint8 model's probabilities by a few output steps: with the bar set
    below that, the export is refused with its figures and nothing is written; --force writes it."""
    needs("openvino")
    from zoo.errors import RestoreError
    from zoo.training import convert
    from zoo.training.export import export_model

    monkeypatch.setattr(convert, "MAX_ABS_DP", 0.0)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    out = tmp_path / "q.xml"
    with pytest.raises(RestoreError, match=r"disagrees with the .tflite on 16 synthetic images: top-1 agreement "
                                           r"100.0% .* max \|dp\| 0.0\d+ \(at most 0\); nothing was written"):
        export_model(TFLITE, "openvino", out)
    assert list(tmp_path.iterdir()) == []
    result = export_model(TFLITE, "openvino", out, force=True)
    assert result.forced and json.loads((tmp_path / "q.xml.zoo.json").read_text())["conversion"]["forced"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.bin", "q.xml", "q.xml.zoo.json"]


def test_export_targets_refuse_what_they_cannot_be(tmp_path, exported):
    failed = zoo("export", str(TFLITE), "--to", "onnx", "--out", str(tmp_path / "m.tflite"), expect=2)
    assert "an onnx export is a .onnx file" in failed.stderr
    failed = zoo("export", str(TFLITE), "--to", "onnx", "--out", str(exported[0] / "q.onnx"), expect=2)
    assert "already exists" in failed.stderr
    foreign = tmp_path / "their.onnx"
    foreign.write_bytes(b"someone else's model")
    failed = zoo("export", str(TFLITE), "--to", "onnx", "--out", str(foreign), "--overwrite", expect=2)
    assert "is not an .onnx file this tool wrote" in failed.stderr and foreign.read_bytes() == b"someone else's model"
    failed = zoo("export", str(TFLITE), "--to", "onnx", "--quantize", "int8", "--out", str(tmp_path / "m.onnx"),
                 expect=2)
    assert "quantize applies to to='tflite'" in failed.stderr or "--quantize" in failed.stderr
    failed = zoo("restore", MODEL_ID, "--format", "tflite", "--runtime", "openvino", "--precision", "f64", expect=2)
    assert "f64" in failed.stderr


def test_converted_formats_need_a_file():
    from zoo.errors import UsageError
    from zoo.formats import locate

    with pytest.raises(UsageError, match="no tarball holds an onnx file"):
        locate(MODEL_ID, "onnx")


def test_overwriting_an_ir_never_pairs_old_and_new_files(exported, tmp_path):
    """--overwrite of an IR: the new .xml/.bin replace the old ones and the card says so."""
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    out = tmp_path / "q.xml"
    for name in ("q.xml", "q.bin", "q.xml.zoo.json"):
        (tmp_path / name).write_bytes((exported[0] / name).read_bytes())
    zoo("export", str(TFLITE), "--to", "openvino", "--out", str(out), "--overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.bin", "q.xml", "q.xml.zoo.json"]
    assert (tmp_path / "q.bin").read_bytes() == (exported[0] / "q.bin").read_bytes()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("left", ["new card and .bin", "old card and .bin, old .xml removed"])
def test_an_ir_export_killed_before_its_xml_is_replaced_by_the_next(exported, tmp_path, left):
    """A kill between the .bin and the .xml leaves a .bin with this tool's card and no .xml, and
    staging leftovers of a dead process: the next export, without --overwrite, cleans them up
    and publishes a whole IR."""
    needs("openvino")
    from zoo.fetching.locking import host_name

    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    (tmp_path / "q.bin").write_bytes(b"half of an older export" if "old" in left else (exported[0] / "q.bin").read_bytes())
    (tmp_path / "q.xml.zoo.json").write_bytes((exported[0] / "q.xml.zoo.json").read_bytes())
    dead = _dead_pid()
    (tmp_path / f".q.bin.staging-{host_name()}-{dead}-1").write_bytes(b"weights")
    (tmp_path / f".q.xml.staging-{host_name()}-{dead}-2").mkdir()  # the export's work folder
    (tmp_path / f".q.xml.staging-{host_name()}-{dead}-2" / "model.xml").write_bytes(b"<net/>")
    zoo("export", str(TFLITE), "--to", "openvino", "--out", str(tmp_path / "q.xml"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.bin", "q.xml", "q.xml.zoo.json"]
    assert (tmp_path / "q.bin").read_bytes() == (exported[0] / "q.bin").read_bytes()
    zoo("classify", str(tmp_path / "q.xml"), str(PHOTOS[0]))


@pytest.mark.parametrize("card", [False, True])
def test_an_ir_export_never_replaces_a_bin_that_is_not_its_own(tmp_path, card):
    """A lone .bin without this tool's card, or a link, stays as it was and nothing is written."""
    needs("openvino")
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    theirs = tmp_path / "theirs.bin"
    theirs.write_bytes(b"someone's weights")
    if card:  # a card beside a .bin that is a link to another file: still not replaced
        (tmp_path / "q.xml.zoo.json").write_text("{}")
        (tmp_path / "q.bin").symlink_to(theirs)
    else:
        theirs.rename(tmp_path / "q.bin")
    before = sorted(p.name for p in tmp_path.iterdir())
    failed = zoo("export", str(TFLITE), "--to", "openvino", "--out", str(tmp_path / "q.xml"), expect=2)
    assert "q.bin already exists and is not this tool's" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "q.bin").read_bytes() == b"someone's weights"


def test_openvino_compiles_once_for_side_by_side_copies(images, litert_answers):
    """eval's copies of an OpenVINO model are requests on one compile for N streams (N one-thread
    compiles pin their threads to the same core), each answering like the single-stream model."""
    needs("openvino")
    from zoo.formats import locate

    ref = locate(str(TFLITE), None)
    model = ref.load(runtime="openvino", threads=1, streams=2)
    assert (model.streams, model.threads) == (2, 1) and model.summary()["streams"] == 2
    copy = model.copy()
    assert copy.compiled is model.compiled and copy._request is not model._request
    single = ref.load(runtime="openvino", threads=1)
    assert single.streams == 1
    assert np.array_equal(copy(images), single(images)) and np.array_equal(model(images), single(images))


@pytest.fixture(scope="module")
def beyond_tf2onnx(tmp_path_factory):
    """An op (BUCKETIZE) LiteRT runs and tf2onnx 1.17 has no ONNX handler for."""
    return one_op_tflite(tmp_path_factory.mktemp("bucketize"), lambda tf, x: tf.cast(
        tf.raw_ops.Bucketize(input=tf.reduce_mean(x, axis=[1, 2]), boundaries=[0.0, 0.5]), tf.float32))


def test_a_tf2onnx_conversion_that_fails_writes_nothing(beyond_tf2onnx, tmp_path):
    needs("onnxruntime")
    zoo("classify", str(beyond_tf2onnx), str(PHOTOS[0]))  # LiteRT runs it
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    failed = zoo("export", str(beyond_tf2onnx), "--to", "onnx", "--out", str(tmp_path / "m.onnx"), expect=1)
    assert "tf2onnx cannot convert" in failed.stderr and "no ONNX op for BUCKETIZE" in failed.stderr
    assert "--runtime litert or openvino" in failed.stderr and "ERROR:tf2onnx" not in failed.stderr
    assert list(tmp_path.iterdir()) == []
    failed = zoo("classify", str(beyond_tf2onnx), str(PHOTOS[0]), "--runtime", "onnxruntime", expect=1)
    assert "no ONNX op for BUCKETIZE" in failed.stderr
