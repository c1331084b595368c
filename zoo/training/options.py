"""What the training and conversion commands accept: one home for the library and the CLI's choices.

Light on purpose (no numpy, no TensorFlow): the command line builds its choices from these.
"""

from __future__ import annotations

EXPORT_TARGETS = ("tflite", "saved_model")
QUANTIZE_MODES = ("int8",)
INT8_IO_TYPES = ("uint8", "int8")
# Images that calibrate a full-integer file, spread over the classes (TFLite's guide suggests ~100-500).
DEFAULT_CALIBRATION_IMAGES = 200


def check_quantize(quantize: str | None) -> None:
    """None, or one of ``QUANTIZE_MODES`` (a UsageError naming the parameter otherwise)."""
    if quantize is not None and quantize not in QUANTIZE_MODES:
        from ..errors import UsageError

        raise UsageError(f"unknown quantize={quantize!r}",
                         hint="use " + " or ".join(f"quantize={m!r}" for m in QUANTIZE_MODES), params=("quantize",))
