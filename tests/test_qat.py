"""Quantization-aware fine-tuning, `finetune --quantize int8 --qat` (``zoo.training.qat``).

Data: scikit-learn's real digits. Weights: the v1 0.25_128 float checkpoint recovered from the
real upstream uint8 file (``tests/real_weights.py``), and the ``_quant`` checkpoint in
contrib.quantize's shape made from the same file (ranges from its scales and zero points).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("sklearn")
pytestmark = pytest.mark.tf

import zoo  # noqa: E402
from zoo.catalog import load_catalog  # noqa: E402
from zoo.errors import UsageError  # noqa: E402
from zoo.training.finetuning import finetune  # noqa: E402

from . import real_weights  # noqa: E402
from .digits import write_digits  # noqa: E402

BASE = real_weights.CATALOG_ID
QAT_BAR = 1.5  # points: the int8 file against the float one of the same run (the bar)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return real_weights.write_checkpoint(tmp_path_factory.mktemp("real_v1"))


@pytest.fixture(scope="module")
def few_digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits") / "few", size=32, limit=200, classes=(0, 1, 7))


@pytest.fixture(scope="module")
def quant_prefix(tmp_path_factory):
    directory = tmp_path_factory.mktemp("v1_quant")
    real_weights.write_quant_checkpoint(directory)
    return directory / f"{real_weights.QUANT_STEM}.ckpt"


@pytest.fixture(scope="module")
def qat_out(tmp_path_factory, few_digits, checkpoint):
    out = tmp_path_factory.mktemp("runs") / "qat"
    result = finetune(BASE, few_digits, out, checkpoint=checkpoint, epochs=2, quantize="int8", qat=True,
                      learning_rate=1e-2, catalog=load_catalog(), progress=False)
    return out, result


def _ops(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return interpreter, tensors, interpreter._get_ops_details()


def _nudged_scale(low: float, high: float, steps: int = 255) -> float:
    return (high - low) / steps


# ----------------------------------------------------------------------------- what OUT holds
def test_finetune_json_says_how_it_was_quantized(qat_out):
    out, result = qat_out
    manifest = json.loads((out / "finetune.json").read_text())
    quantization = manifest["quantization"]
    assert quantization["mode"] == "quantization-aware training"
    assert quantization["ranges"].startswith("calibrated on") and quantization["calibration_images"] > 0
    assert manifest["training"]["qat"] is True and manifest["training"]["int8_aware_head"] is True
    assert result.int8_top1 is not None and result.quantize == "int8"


def test_the_int8_file_is_the_trained_network_converted_from_its_own_ranges(qat_out):
    """Every activation and weight scale of model_int8.tflite comes from a range in model.keras."""
    from zoo.formats.fake_quant import fake_quant_layers

    out, _ = qat_out
    model = zoo.restore(out, "ckpt").keras_model
    layers = {layer.name: layer for layer in fake_quant_layers(model)}
    head = layers["classes"]
    assert head.learn_ranges and float(head.output_updates.numpy()) > 0  # learned while training
    low, high = (float(v) for v in head.output_range.numpy())
    w_low, w_high = (float(v) for v in head.weights_range.numpy())
    # Last value: the range is taken before each optimizer step, so it tracks the trained weights'
    # extremes one step behind -- close to them, and always holding zero.
    kernel = head.kernel.numpy() * head.multiplier.numpy()
    assert w_low <= 0.0 <= w_high
    assert (w_low, w_high) == pytest.approx((min(kernel.min(), 0.0), max(kernel.max(), 0.0)), rel=0.1)
    interpreter, tensors, ops = _ops(out / "model_int8.tflite")
    (fc,) = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    assert tensors[fc["outputs"][0]]["quantization"][0] == pytest.approx(_nudged_scale(low, high), rel=1e-5)
    assert tensors[fc["inputs"][1]]["quantization"][0] == pytest.approx(_nudged_scale(w_low, w_high, 254), rel=1e-5)
    first_conv = next(op for op in ops if op["op_name"] == "CONV_2D")
    c_low, c_high = (float(v) for v in layers["conv1_relu"].output_range.numpy())
    assert tensors[first_conv["outputs"][0]]["quantization"][0] == pytest.approx(_nudged_scale(c_low, c_high), rel=1e-5)
    assert {t["dtype"] for t in tensors.values()} <= {np.uint8, np.int32}  # full-integer


def test_a_model_that_never_trained_with_qat_cannot_continue_with_it(small_float_out, few_digits, tmp_path):
    with pytest.raises(UsageError, match="float fine-tuned model; qat=True continues only"):
        finetune(small_float_out, few_digits, tmp_path / "again", epochs=1, quantize="int8", qat=True,
                 progress=False)


@pytest.fixture(scope="module")
def small_float_out(tmp_path_factory, few_digits, checkpoint):
    out = tmp_path_factory.mktemp("runs") / "float"
    finetune(BASE, few_digits, out, checkpoint=checkpoint, epochs=1, catalog=load_catalog(), progress=False)
    return out


def test_a_qat_model_continues_with_qat(qat_out, few_digits, tmp_path):
    again = finetune(qat_out[0], few_digits, tmp_path / "again", epochs=1, quantize="int8", qat=True, progress=False)
    manifest = json.loads((tmp_path / "again" / "finetune.json").read_text())
    assert manifest["quantization"]["ranges"].startswith("the fine-tuned model's own ranges")
    assert again.int8_top1 is not None


# ----------------------------------------------------------------------------- from a _quant model
def test_a_quant_model_continues_from_its_published_ranges(quant_prefix, few_digits, tmp_path):
    """Head-only from v1_0.25_128_quant: the backbone keeps the checkpoint's ranges, so the int8 file
    quantizes the first conv's weights and output exactly as the published uint8 file does."""
    out = tmp_path / "from_quant"
    result = finetune(real_weights.QUANT_CATALOG_ID, few_digits, out, checkpoint=quant_prefix, epochs=1,
                      quantize="int8", qat=True, learning_rate=1e-2, catalog=load_catalog(), progress=False)
    manifest = json.loads((out / "finetune.json").read_text())
    assert manifest["quantization"]["ranges"].startswith("the _quant checkpoint's published ranges")
    assert manifest["quantization"]["calibration_images"] == 0 and result.int8_top1 is not None

    def first_conv(path):
        _, tensors, ops = _ops(path)
        op = next(o for o in ops if o["op_name"] == "CONV_2D")
        return [tensors[i]["quantization"] for i in (op["inputs"][1], op["outputs"][0])]

    from zoo.formats.fake_quant import fake_quant_layers

    layers = fake_quant_layers(zoo.restore(out, "ckpt").keras_model)
    assert len(layers) > 28 and all(layer.learn_ranges for layer in layers)  # ready to go on learning
    ours, published = first_conv(out / "model_int8.tflite"), first_conv(real_weights.TFLITE)
    for (scale, zero), (want_scale, want_zero) in zip(ours, published):
        assert scale == pytest.approx(want_scale, rel=1e-5) and zero == want_zero


def test_a_quant_model_without_qat_is_refused_with_the_way_to_do_it(quant_prefix, few_digits, tmp_path):
    with pytest.raises(UsageError, match="is a quantized model") as caught:
        finetune(real_weights.QUANT_CATALOG_ID, few_digits, tmp_path / "x", checkpoint=quant_prefix,
                 quantize="int8", catalog=load_catalog(), progress=False)
    assert "qat=True" in caught.value.hint and not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- quality on real digits
@pytest.fixture(scope="module")
def all_digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits") / "all", size=32)


@pytest.mark.slow
@pytest.mark.parametrize("train_backbone", [False, True], ids=["head_only", "backbone"])
def test_real_digits_int8_within_a_point_and_a_half_of_float(tmp_path, all_digits, checkpoint, train_backbone):
    result = finetune(BASE, all_digits, tmp_path / "qat", checkpoint=checkpoint, epochs=5, quantize="int8", qat=True,
                      train_backbone=train_backbone, catalog=load_catalog(), progress=False)
    print(f"\ndigits held-out top-1, qat, train_backbone={train_backbone}:", result.to_json())
    assert result.val_images == 359 and result.train_images == 1438
    assert result.val_top1 >= (94.0 if train_backbone else 85.0)
    assert abs(result.tflite_top1 - result.val_top1) <= 0.6       # the float file keeps the fake-quant ops
    assert result.int8_top1 >= result.tflite_top1 - QAT_BAR
    if train_backbone:  # the backbone's ranges moved with its weights, beyond the calibration pass
        from zoo.formats.fake_quant import fake_quant_layers

        model = zoo.restore(tmp_path / "qat", "ckpt").keras_model
        relu = {layer.name: layer for layer in fake_quant_layers(model)}["conv_pw_13_relu"]
        batches = -(-200 // 32)
        assert float(relu.output_updates.numpy()) > batches
