"""The LiteRT loader on the real upstream uint8 model vendored in tests/data."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from zoo.catalog import load_catalog  # noqa: E402
from zoo.errors import MissingDependencyError, RestoreError, UsageError  # noqa: E402
from zoo.images import load_images  # noqa: E402
from zoo.formats import restore_file, restore_from_dir  # noqa: E402
from zoo.formats.tflite import dequantize, quantize  # noqa: E402

pytestmark = pytest.mark.tf
DATA = Path(__file__).resolve().parent / "data"
MODEL_ID = "v1_0.25_128_quant"


@pytest.fixture(scope="module")
def entry():
    return load_catalog(with_profile=False).get(MODEL_ID)


@pytest.fixture(scope="module")
def model(entry):
    # tests/data holds the file under the name the catalog expects: it is a model dir.
    return restore_from_dir(entry, DATA, "tflite")


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
    two = restore_from_dir(entry, DATA, "tflite", threads=2)
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


def test_export_copies_the_flatbuffer(model, tmp_path):
    out = model.export(tmp_path / "exported")
    assert out.read_bytes() == (DATA / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()


def test_damaged_file_names_model_and_path(entry, tmp_path):
    bad = tmp_path / "mobilenet_v1_0.25_128_quant.tflite"
    bad.write_bytes(b"TFL3" + b"\x00" * 64)
    with pytest.raises(RestoreError, match=f"{MODEL_ID}: LiteRT cannot load .*{bad.name}") as info:
        restore_from_dir(entry, tmp_path, "tflite")
    assert "verify --repair" in info.value.hint


def test_missing_file_and_wrong_model(entry, tmp_path):
    with pytest.raises(RestoreError, match="no tflite file"):
        restore_from_dir(entry, tmp_path, "tflite")
    with pytest.raises(RestoreError, match="does not exist"):
        restore_from_dir(entry, tmp_path / "nowhere", "tflite")
    other = load_catalog(with_profile=False).get("v1_0.25_160_quant")
    with pytest.raises(RestoreError, match=r"input of shape \[1, 128, 128, 3\].*\[N, 160, 160, 3\]"):
        restore_file(other, DATA / "mobilenet_v1_0.25_128_quant.tflite", "tflite")


def test_options_that_do_not_apply(entry):
    with pytest.raises(UsageError, match="weights.*tflite"):
        restore_from_dir(entry, DATA, "tflite", weights="ema")
    with pytest.raises(UsageError, match="^threads must be at least 1"):
        restore_from_dir(entry, DATA, "tflite", threads=0)


def test_missing_litert_is_a_missing_dependency(entry, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import now fails
    with pytest.raises(MissingDependencyError, match="ai-edge-litert"):
        restore_from_dir(entry, DATA, "tflite")


def test_edgetpu_file_is_skipped_when_a_cpu_file_exists(entry, tmp_path):
    shutil.copy(DATA / "mobilenet_v1_0.25_128_quant.tflite", tmp_path)
    glob_entry = __import__("dataclasses").replace(entry, files={"tflite": "*.tflite"})
    (tmp_path / "zz_edgetpu.tflite").write_bytes(b"not for the CPU")
    assert restore_from_dir(glob_entry, tmp_path, "tflite").source.name == "mobilenet_v1_0.25_128_quant.tflite"
