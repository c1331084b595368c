"""The LiteRT loader on the real upstream uint8 model vendored in tests/data."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from zoo.catalog import load_catalog
from zoo.errors import MissingDependencyError, RestoreError, UsageError
from zoo.data.images import load_images
from zoo.formats import restore, restore_file
from zoo.formats.tflite import dequantize, quantize

pytestmark = pytest.mark.tf
DATA = Path(__file__).resolve().parent / "data"
MODEL_ID = "v1_0.25_128_quant"


@pytest.fixture(scope="module")
def entry():
    return load_catalog(with_profile=False).get(MODEL_ID)


@pytest.fixture(scope="module")
def model(entry):
    # tests/data holds the file under the name the catalog expects: it is a model dir.
    return restore(DATA, "tflite", entry=entry)


def test_summary_reads_quantization_from_the_file(model, entry):
    info = model.summary()
    assert info["format"] == "tflite" and info["id"] == MODEL_ID
    assert info["input_shape"] == [None, 128, 128, 3] and info["output_shape"] == [None, 1001]
    assert info["input_dtype"] == "uint8" and info["output_dtype"] == "uint8"
    assert info["input_quantization"] == {"scale": 0.0078125, "zero_point": 128}
    assert info["output_quantization"] == {"scale": 0.00390625, "zero_point": 0}
    assert info["batch"] == 1
    assert abs(info["parameters"] / 1e6 - entry.params_m) < 0.01


def test_batches_loop_over_the_fixed_batch_of_one(model):
    batch = load_images([DATA / "cat.bmp", DATA / "bird.bmp", DATA / "cat.bmp"], model.input_size)
    probs = model(batch)
    assert probs.shape == (3, 1001) and probs.dtype == np.float32
    np.testing.assert_array_equal(probs[0], probs[2])
    np.testing.assert_array_equal(probs[1], model(batch[1])[0])
    # uint8 softmax: 1/256 steps, so hundreds of tiny probabilities round down to 0
    assert ((probs.sum(axis=1) > 0.8) & (probs.sum(axis=1) < 1.05)).all()
    assert (probs >= 0).all()


def test_threads_do_not_change_answers(entry, model):
    batch = load_images([DATA / "bird.bmp"], model.input_size)
    two = restore(DATA, "tflite", entry=entry, threads=2)
    assert two.summary()["threads"] == 2
    np.testing.assert_array_equal(two(batch), model(batch))


def test_wrong_image_shape_is_a_usage_error(model):
    with pytest.raises(UsageError, match=r"v1_0.25_128_quant.*\[N, 128, 128, 3\]"):
        model(np.zeros((1, 224, 224, 3), np.float32))


def test_quantize_round_trip_and_clipping():
    q = quantize(np.array([-1.0, 0.0, 0.99, 2.0]), 1 / 128, 128, np.uint8)
    np.testing.assert_array_equal(q, [0, 128, 255, 255])
    np.testing.assert_allclose(dequantize(q, 1 / 128, 128), [-1.0, 0.0, 0.9921875, 0.9921875])
    np.testing.assert_array_equal(quantize(np.array([-1.0, 1.0]), 1 / 128, 0, np.int8), [-128, 127])


def _single_image_outputs(path: Path, images: np.ndarray) -> np.ndarray:
    """The upstream file run image by image through its own (unnamed, batch 1) tensors."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(rows)


def _uint8_images(model) -> np.ndarray:
    batch = load_images([DATA / "cat.bmp", DATA / "bird.bmp", DATA / "cat.bmp"], model.input_size)
    batch[2] = np.flip(batch[2], axis=1)  # three different images
    return quantize(batch, 1 / 128, 128, np.uint8)


def test_export_serves_images_to_probabilities_with_any_batch(model, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    original = DATA / "mobilenet_v1_0.25_128_quant.tflite"
    before = original.read_bytes()
    out = model.export(tmp_path / "exported.tflite")
    assert out == tmp_path / "exported.tflite" and model.export_batch == "dynamic"
    assert original.read_bytes() == before  # the source is never touched

    images = _uint8_images(model)
    runner = Interpreter(model_path=str(out)).get_signature_runner("serving_default")
    assert list(runner.get_input_details()) == ["images"]
    assert list(runner.get_output_details()) == ["probabilities"]
    probs = runner(images=images)["probabilities"]
    assert probs.shape == (3, 1001) and probs.dtype == np.uint8
    np.testing.assert_array_equal(probs, _single_image_outputs(original, images))
    assert not np.array_equal(probs[0], probs[2])  # the rows really are different images
    # the restored export is a model like any other: the loader sees the dynamic batch
    assert restore_file(model.entry, out, "tflite").summary()["batch"] == "dynamic"


def test_export_to_a_directory_keeps_the_file_name_and_never_overwrites_the_source(model, tmp_path):
    out = model.export(tmp_path / "exported")
    assert out == tmp_path / "exported" / "mobilenet_v1_0.25_128_quant.tflite"
    with pytest.raises(RestoreError, match="is the model file itself"):
        model.export(DATA / "mobilenet_v1_0.25_128_quant.tflite")


def test_a_model_without_a_batch_reshape_still_gets_the_signature_with_batch_one():
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from zoo.formats.tflite_signature import sign_flatbuffer

    # the same upstream file with its Reshape op removed from the graph's view: the
    # SpatialSqueeze constant is gone, so the batch stays 1 and that is said, not failed
    upstream = flatbuffer_utils.read_model(str(DATA / "mobilenet_v1_0.25_128_quant.tflite"))
    graph = upstream.subgraphs[0]
    reshape = next(op for op in graph.operators
                   if upstream.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode == schema.BuiltinOperator.RESHAPE)
    for op in graph.operators:  # softmax reads the logits [1, 1, 1, 1001] directly
        op.inputs = [reshape.inputs[0] if i == reshape.outputs[0] else i for i in op.inputs]
    graph.operators.remove(reshape)
    graph.tensors[graph.outputs[0]].shape = np.array([1, 1, 1, 1001], np.int32)
    signed = sign_flatbuffer(bytes(flatbuffer_utils.convert_object_to_bytearray(upstream)),
                             num_inputs=1, num_outputs=1)
    assert not signed.dynamic_batch
    runner = Interpreter(model_content=signed.data).get_signature_runner("serving_default")
    out = runner(images=np.full((1, 128, 128, 3), 128, np.uint8))["probabilities"]
    assert out.shape[0] == 1


def test_restore_export_through_the_console_script(tmp_path):
    import subprocess

    from .conftest import console_script

    out = tmp_path / "out.tflite"
    done = subprocess.run([console_script(), "restore", str(DATA / "mobilenet_v1_0.25_128_quant.tflite"),
                           "--export", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in done.stdout.splitlines() if "  " in line}
    assert lines["exported to"] == str(out) and lines["exported batch"] == "dynamic"
    assert out.stat().st_size > 0 and "Traceback" not in done.stderr and "oneDNN" not in done.stderr


def test_damaged_file_names_model_and_path(entry, tmp_path):
    bad = tmp_path / "mobilenet_v1_0.25_128_quant.tflite"
    bad.write_bytes(b"TFL3" + b"\x00" * 64)
    with pytest.raises(RestoreError, match=f"{MODEL_ID}: LiteRT cannot load .*{bad.name}") as info:
        restore(tmp_path, "tflite", entry=entry)
    assert "verify --repair" in info.value.hint


def test_missing_file_and_wrong_model(entry, tmp_path):
    with pytest.raises(RestoreError, match="no tflite file"):
        restore(tmp_path, "tflite", entry=entry)
    with pytest.raises(UsageError, match="model file not found: .*nowhere"):
        restore(tmp_path / "nowhere", "tflite", entry=entry)
    other = load_catalog(with_profile=False).get("v1_0.25_160_quant")
    with pytest.raises(RestoreError, match=r"input of shape \[1, 128, 128, 3\].*\[N, 160, 160, 3\]"):
        restore_file(other, DATA / "mobilenet_v1_0.25_128_quant.tflite", "tflite")


def test_options_that_do_not_apply(entry):
    with pytest.raises(UsageError, match="weights.*tflite"):
        restore(DATA, "tflite", entry=entry, weights="ema")
    with pytest.raises(UsageError, match="^threads must be at least 1"):
        restore(DATA, "tflite", entry=entry, threads=0)


def test_missing_litert_is_a_missing_dependency(entry, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import now fails
    with pytest.raises(MissingDependencyError, match="ai-edge-litert"):
        restore(DATA, "tflite", entry=entry)


def test_edgetpu_file_is_skipped_when_a_cpu_file_exists(entry, tmp_path):
    shutil.copy(DATA / "mobilenet_v1_0.25_128_quant.tflite", tmp_path)
    glob_entry = __import__("dataclasses").replace(entry, files={"tflite": "*.tflite"})
    (tmp_path / "zz_edgetpu.tflite").write_bytes(b"not for the CPU")
    assert restore(tmp_path, "tflite", entry=glob_entry).source.name == "mobilenet_v1_0.25_128_quant.tflite"
