"""The frozen backbone as the int8 file will run it, so the head can learn from its features.

    int8 = int8_backbone(backbone, entry, calibration_files, workdir)
    feats = int8(images)               # float32 [N, features]: dequantized int8 features

Why: post-training full-integer quantization keeps each activation in 256 steps of its
calibrated range. MobileNet's ReLU6 activations fill [0, 6] (steps of 6/255) on any data,
so on inputs unlike ImageNet photos, whose activations mostly sit in the first few steps
(scans of digits: 41% of pooled features fall below one step), the int8 backbone's
features differ from the float one's by about a third of their size. A head trained on
float features alone then loses 14-23 points in the int8 file. Calibration cannot help
(the ranges are already the ReLU6 range; 50, 200 or 1438 calibration images give the
same file); what helps is training the head on both: the features the float backbone
produces and those the int8 backbone produces (deterministic for a frozen backbone and a
fixed calibration sample), so one head serves the float and the int8 file.

The backbone here is converted exactly as ``zoo.training.export.write_int8_tflite`` converts the
whole model later, with the same calibration images, so its int8 features are the ones
the exported ``model_int8.tflite`` computes before its head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def int8_backbone(backbone: Any, entry: Any, calibration: Sequence[str],
                  directory: Path, own_ranges: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Full-integer TFLite copy of ``backbone`` (calibrated on ``calibration``) as a float callable.

    Cloned, written and converted in ``directory`` as every feature-pass backbone is
    (``zoo.training.runtime_backbone.converted_backbone``). The returned function takes float
    images [N, H, W, 3] in [-1, 1] and returns the dequantized int8 feature vectors
    [N, features] (LiteRT, fed through the file's own input quantization).
    ``own_ranges``: a fake-quant backbone (quantization-aware training) converts from its own
    ranges, as ``model_int8.tflite`` then is, and ``calibration`` is not used.
    """
    from ..data.images import preprocessed_batches
    from .export import write_fake_quant_tflite, write_int8_tflite
    from .runtime_backbone import converted_backbone

    size = entry.input_size[:2]
    if own_ranges:
        convert = write_fake_quant_tflite
    else:
        def convert(saved: Path, path: Path) -> Path:
            return write_int8_tflite(saved, path, lambda: preprocessed_batches(calibration, size), "uint8")
    return converted_backbone(backbone, entry, directory, "int8_backbone", convert)


def relative_error(features: np.ndarray, reference: np.ndarray) -> float:
    """Mean over rows of ||features - reference|| / ||reference|| (how far int8 moves a feature vector)."""
    norms = np.maximum(np.linalg.norm(reference, axis=1), 1e-12)
    return float(np.mean(np.linalg.norm(features - reference, axis=1) / norms))
