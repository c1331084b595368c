"""MobileNet-EdgeTPU as a Keras functional model (Keras has no EdgeTPU application).

The architecture is slim's ``V3_EDGETPU`` (``research/slim/nets/mobilenet/mobilenet_v3.py``):
a 3x3 stem, then 23 inverted-residual blocks. The first ten are "fused": the 1x1
expansion and the depthwise conv are replaced by one regular k x k conv with the
block's stride (slim scope ``expand``), so they have no depthwise layer at all; the
first block does not even expand (32 -> 32), only projects. The rest are ordinary
expand -> depthwise -> project blocks. All activations are ReLU, there is no
squeeze-excite and no hard-swish, and a 1x1 conv to 1280 channels precedes pooling and
the 1001-class logits. Widths below 1.0 keep the 1280 layer (``edge_tpu_075`` uses
``finegrain_classification_mode``).

Every conv uses ``padding="same"``, which the TensorFlow backend runs as TF's SAME: the
same padding slim uses, for any input size. Layer names follow Keras' MobileNetV3
(``conv``, ``expanded_conv_3_expand``, ``..._bn``, ``conv_1``, ``logits``) so the v3 name
rules in ``slim_names`` apply under the ``MobilenetEdgeTPU`` scope.
"""

from __future__ import annotations

from typing import Any

from ..catalog.registry import Entry
from .keras_models import import_keras

# (fused?, kernel, stride, expansion, depth, residual allowed) per block, in slim's order.
EDGETPU_BLOCKS = (
    [(True, 3, 1, 1, 16, True), (True, 3, 2, 8, 32, True)]
    + [(True, 3, 1, 4, 32, True)] * 3
    + [(True, 3, 2, 8, 48, True)] + [(True, 3, 1, 4, 48, True)] * 3
    + [(False, 3, 2, 8, 96, True)] + [(False, 3, 1, 4, 96, True)] * 3
    + [(False, 3, 1, 8, 96, False)] + [(False, 3, 1, 4, 96, True)] * 3
    + [(False, 5, 2, 8, 160, True)] + [(False, 5, 1, 4, 160, True)] * 3
    + [(False, 3, 1, 8, 192, True)]
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """slim's channel rounding: nearest multiple of ``divisor``, never 10% below ``value``."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def edgetpu_model(entry: Entry) -> Any:
    """The untrained Keras MobileNet-EdgeTPU for ``entry`` (1001-class softmax output)."""
    keras = import_keras()
    layers = keras.layers
    depth = lambda d: make_divisible(d * entry.width)  # noqa: E731 - slim's depth multiplier

    def conv_bn_relu(x: Any, name: str, filters: int, kernel: int = 1, stride: int = 1,
                     relu: bool = True) -> Any:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    inputs = layers.Input(shape=tuple(entry.input_size), name="input")
    x = conv_bn_relu(inputs, "conv", depth(32), kernel=3, stride=2)
    for i, (fused, kernel, stride, expansion, d, residual) in enumerate(EDGETPU_BLOCKS):
        prefix = "expanded_conv" + (f"_{i}" if i else "")
        shortcut, depth_in = x, x.shape[-1]
        inner = make_divisible(depth_in * expansion)
        if inner > depth_in:
            x = conv_bn_relu(x, f"{prefix}_expand", inner, kernel=kernel if fused else 1,
                             stride=stride if fused else 1)
        if not fused:
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                       name=f"{prefix}_depthwise")(x)
            x = layers.BatchNormalization(epsilon=1e-3, name=f"{prefix}_depthwise_bn")(x)
            x = layers.ReLU(name=f"{prefix}_depthwise_relu")(x)
        x = conv_bn_relu(x, f"{prefix}_project", depth(d), relu=False)
        if residual and stride == 1 and depth_in == x.shape[-1]:
            x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    x = conv_bn_relu(x, "conv_1", 1280 if entry.width <= 1.0 else depth(1280))
    x = layers.GlobalAveragePooling2D(keepdims=True, name="global_pool")(x)
    x = layers.Conv2D(entry.num_classes, 1, name="logits")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Softmax(name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"mobilenet_edgetpu_{entry.width}_{entry.resolution}")
