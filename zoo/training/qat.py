"""Quantization-aware fine-tuning (``finetune --quantize int8 --qat``): train with fake-quant in the graph.

The network trained is the one ``zoo.formats.fake_quant`` restores a ``_quant`` checkpoint as
(batch norm folded into the weights, 8-bit fake-quant on the folded weights, after each ReLU6,
on v2's project outputs and bypass Adds, and on the logits), with its ranges *learning*:

* weights: each training step quantizes with the folded weights' current extremes
  (contrib.quantize's ``LastValueQuantize``), so the kernels train through the rounding
  (straight-through gradient of ``fake_quant_with_min_max_vars``);
* activations: a moving average of each batch's extremes (``MovingAvgQuantize``; see
  ``fake_quant.EMA_DECAY``). From a float model the ranges start from a calibration pass over
  the training images; from a ``_quant`` model they continue from its published ranges, as the
  seed's ``train --quantize`` does with ``--fine_tune_checkpoint``.

The new head is a fake-quant dense layer. Batch norm stays frozen (folded with its moving
statistics), as in float fine-tuning. ``model_int8.tflite`` is this network converted from its
own ranges (``export.write_fake_quant_tflite``), with no calibration of its own. As with the
int8-aware head, the head also learns from the backbone's int8 features, here the fake-quant
backbone converted the same way: simulated rounding is not integer arithmetic (on digits the
two drift apart by about two quantization steps per activation after a few layers), and the
head should fit what the file computes.
"""

from __future__ import annotations

from typing import Any

from ..catalog.registry import Entry
from ..errors import UsageError

RANGES_PUBLISHED = "the _quant checkpoint's published ranges, then moving averages"
RANGES_CONTINUED = "the fine-tuned model's own ranges, then moving averages"
RANGES_CALIBRATED = "calibrated on {n} training images, then moving averages"


def check_qat(qat: bool, quantize: str | None) -> None:
    if qat and quantize != "int8":
        raise UsageError("qat=True trains for an int8 file: it needs quantize='int8'",
                         hint="add quantize='int8', or drop qat=True", params=("qat", "quantize"))


def check_family(entry: Entry, qat: bool) -> None:
    """Quantization-aware training places fake-quant ops as ``fake_quant`` does: v1 and v2 only."""
    from ..formats.fake_quant import SUPPORTED_FAMILIES

    if qat and entry.family not in SUPPORTED_FAMILIES:
        raise UsageError(f"{entry.id}: quantization-aware training is implemented for MobileNet "
                         f"{' and '.join(SUPPORTED_FAMILIES)} ({entry.family}'s fake-quant points are not known "
                         "from any public source)",
                         hint="drop qat=True: quantize='int8' alone trains an int8-aware head", params=("qat",))


def qat_network(entry: Entry, path: Any, *, kind: str) -> tuple[Any, str | None]:
    """(the whole restored network with learning fake-quant ranges, where its ranges come from:
    None when they are not known yet and must be calibrated).

    ``kind``: "slim" (a catalog checkpoint: a float one gets ranges to learn, a ``_quant`` one keeps
    its own) or "keras" (a directory ``finetune --qat`` wrote: it carries its ranges).
    """
    from ..formats import fake_quant

    if kind == "keras":
        from ..formats.finetuned import load_keras_file

        model = load_keras_file(entry, path).keras_model
        if not fake_quant.fake_quant_layers(model):
            raise UsageError(f"{entry.id}: {path} is a float fine-tuned model; qat=True continues only a model that "
                             "was itself trained with qat=True",
                             hint="fine-tune the catalog model it came from with quantize='int8', qat=True",
                             params=("qat",))
        fake_quant.start_learning(model)
        return model, RANGES_CONTINUED
    from ..formats.ckpt import restore_checkpoint
    from ..formats.slim_names import bindings_for

    restored = restore_checkpoint(entry, path)
    if entry.quantized:  # restored as its fake-quant network, with its ranges
        fake_quant.start_learning(restored.keras_model)
        return restored.keras_model, RANGES_PUBLISHED
    model = restored.keras_model
    uses = fake_quant.quant_plan(entry, model, bindings_for(entry, model))
    return fake_quant.fake_quant_network(model, uses, None, learn=True), None


def qat_head(inputs: int, classes: int, name: str, seed: int) -> Any:
    """The new classifier: a dense softmax layer with fake-quant weights and logits."""
    from ..formats.fake_quant import fake_quant_dense

    return fake_quant_dense(classes, inputs, name=name, seed=seed)


def calibrate_backbone(backbone: Any, files: list[str], size: Any) -> int:
    """Ranges of a float model's fake-quant backbone from the calibration images (mean extremes)."""
    from ..data.images import preprocessed_batches
    from ..formats.fake_quant import calibrate

    calibrate(backbone, preprocessed_batches(files, size, batch=32))
    return len(files)
