"""Build the Keras architecture that a TF-slim MobileNet checkpoint fits into.

``keras.applications`` already has every float MobileNet the catalog lists (v1, v2,
v3 large/small, minimalistic), and its layers line up one-to-one with slim's, so we
build those rather than a hand-written copy. The settings that make the two agree:

* 1001 classes (slim's index 0 is "background"), ``weights=None``, ``include_top=True``;
* v3 with ``include_preprocessing=False``: our inputs already arrive in [-1, 1];
* padding: slim convolves with SAME. Keras pads stride-2 depthwise layers explicitly
  and then uses VALID. For v2/v3 Keras computes that padding from the input size
  (``correct_pad``), which equals SAME for any size. v1 always pads (0, 1), which equals
  SAME only when the layer's input size is even, i.e. when the resolution is a multiple
  of 32 (true for every published v1). Other sizes are refused, never silently wrong.
* widths: Keras rounds channels with the same ``_make_divisible`` rule as slim, keeps
  v2's last conv at 1280 for widths < 1 (slim's ``finegrain_classification_mode``, which
  the published v2 0.35/0.5/0.75 use) and v3's 1280/1024 head unscaled for widths <= 1.
  A checkpoint built another way fails the shape check in ``ckpt`` with a clear message.

MobileNet-EdgeTPU has no Keras application; ``keras_edgetpu`` builds it.

The equivalence is not assumed: ``tests/test_restore_ckpt.py`` compares every family
against a TF graph that computes slim's forward pass.
"""

from __future__ import annotations

from typing import Any

from ..catalog.registry import Entry
from ..errors import MissingDependencyError, RestoreError


def import_tensorflow() -> Any:
    """TensorFlow, imported on first use with its C++ log noise turned down."""
    from .._util.runtime_logs import import_tensorflow as quiet_import

    try:
        tf = quiet_import()
    except ImportError:
        raise MissingDependencyError("tensorflow", "restoring checkpoints") from None
    return tf


def import_keras() -> Any:
    import_tensorflow()
    try:
        import keras
    except ImportError:
        raise MissingDependencyError("keras", "restoring checkpoints") from None
    return keras


def build_keras_model(entry: Entry) -> Any:
    """The untrained ``keras.Model`` (1001 classes, softmax output) for a catalog entry."""
    keras = import_keras()
    apps = keras.applications
    height, width, channels = entry.input_size
    shape = (height, width, channels)
    common = dict(input_shape=shape, alpha=entry.width, weights=None, include_top=True,
                  classes=entry.num_classes)
    if entry.family == "v1":
        _check_v1_padding(entry)
        return apps.MobileNet(**common)
    if entry.family == "v2":
        return apps.MobileNetV2(**common)
    if entry.family == "v3":
        variant = entry.variant or ""
        builder = apps.MobileNetV3Large if variant.startswith("large") else apps.MobileNetV3Small
        return builder(**common, minimalistic=variant.endswith("minimalistic"),
                       include_preprocessing=False)
    if entry.family == "edgetpu":  # not in keras.applications: our own functional model
        from .keras_edgetpu import edgetpu_model

        return edgetpu_model(entry)
    raise RestoreError(f"{entry.id}: unknown family {entry.family!r}")


def _check_v1_padding(entry: Entry) -> None:
    """Keras' MobileNet (v1) pads stride-2 layers (0, 1): slim's SAME only for even sizes."""
    height, width, _ = entry.input_size
    for side in (height, width):
        size = -(-side // 2)  # after Conv2d_0 (padding 'same', stride 2)
        for _ in range(4):  # depthwise 2, 4, 6, 12 are the strided ones
            if size % 2:
                raise RestoreError(
                    f"{entry.id}: input size {height}x{width} gives an odd feature map before a "
                    "strided layer; Keras' MobileNet pads those differently from slim's SAME",
                    hint="v1 checkpoints restore at resolutions that are multiples of 32 "
                         "(every published one is)")
            size //= 2
