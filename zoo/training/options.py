"""What the training and conversion commands accept: one home for the library and the CLI's choices.

Light on purpose (no numpy, no TensorFlow): the command line builds its choices from these.
"""

from __future__ import annotations

EXPORT_TARGETS = ("tflite", "saved_model", "onnx", "openvino")
# A converted file (onnx, openvino) is refused unless, on the check images, its best class is
# the source's on at least this share of them and no probability moved by more than MAX_ABS_DP.
# uint8 models: ONNX Runtime stays within one output step (1/256); OpenVINO computes the
# dequantized graph in f32 and moved up to 0.023 on noise images (benchmarks/bench_runtimes.py).
MIN_TOP1_AGREEMENT = 99.0
MAX_ABS_DP = 0.05
# Images the check uses when no --calibration folder is given: fixed pseudo-random ones.
SYNTHETIC_CHECK_IMAGES = 16
QUANTIZE_MODES = ("int8",)
# ExportResult.ranges of a model that carries fake-quant ranges (a _quant checkpoint, a --qat fine-tune)
OWN_RANGES = "the model's fake-quant ranges"
INT8_IO_TYPES = ("uint8", "int8")
# What runs the frozen backbone's feature pass (zoo.training.runtime_backbone): auto picks LiteRT
# when the pass is long enough to pay for converting the backbone.
FEATURE_RUNTIMES = ("auto", "litert", "keras")
# Below this many training images a from-scratch run is warned (our rule of thumb, not a published
# figure: ImageNet, which the published weights learnt from, has 1.28 million images).
FROM_SCRATCH_ENOUGH_IMAGES = 10_000
# Images that calibrate a full-integer file, spread over the classes (TFLite's guide suggests ~100-500).
DEFAULT_CALIBRATION_IMAGES = 200


def check_quantize(quantize: str | None) -> None:
    """None, or one of ``QUANTIZE_MODES`` (a UsageError naming the parameter otherwise)."""
    if quantize is not None and quantize not in QUANTIZE_MODES:
        from ..errors import UsageError

        raise UsageError(f"unknown quantize={quantize!r}",
                         hint="use " + " or ".join(f"quantize={m!r}" for m in QUANTIZE_MODES), params=("quantize",))


def check_feature_runtime(feature_runtime: str) -> None:
    """One of ``FEATURE_RUNTIMES`` (a UsageError naming the parameter otherwise)."""
    if feature_runtime not in FEATURE_RUNTIMES:
        from ..errors import UsageError

        raise UsageError(f"unknown feature_runtime={feature_runtime!r}",
                         hint="use one of: " + ", ".join(FEATURE_RUNTIMES), params=("feature_runtime",))
