"""Rebuild a quantized (``_quant``) slim checkpoint as the fake-quant network it was trained as.

Upstream's ``_quant`` checkpoints were trained with ``tf.contrib.quantize``: their graphs are
float graphs with FakeQuant ops embedded, and each checkpoint holds, next to the float weights,
the ranges those ops use. A float restore computes another function; this module puts the
fake-quant ops back, in the places and with the rounding the rewrite used.

Facts (tensorflow/tensorflow ``tensorflow/contrib/quantize/python/``):

* ``fold_batch_norms.py``: batch norm is folded into the preceding convolution before its
  weights are quantized: ``w * gamma / sqrt(moving_variance + eps)``, bias
  ``beta - moving_mean * gamma / sqrt(moving_variance + eps)`` (inference form).
* ``quantize.py`` / ``quant_ops.py``: the folded weights go through ``LastValueQuantize``
  (``<scope>/weights_quant/{min,max}``, 8 bits, ``narrow_range=True``); the layer output after
  ReLU6, and the logits after their BiasAdd, through ``MovingAvgQuantize``
  (``<scope>/act_quant/{min,max}``, ``narrow_range=False``). The input, AvgPool and Softmax
  have no range.
* Rounding, zero-point nudge included: ``tensorflow/core/kernels/fake_quant_ops_functor.h``,
  which ``tf.quantization.fake_quant_with_min_max_vars`` runs here.
* Names, v1: ``MobilenetV1/MobilenetV1/<layer>/act_quant/min`` ... (the doubled prefix is in a
  public variable listing, tensorflow/models#7774); the classifier's are under
  ``MobilenetV1/Logits/Conv2d_1c_1x1``. Both prefixes are accepted for every layer.
  ``narrow_range`` of the weights is also visible in the real uint8 ``.tflite`` files: every
  weight tensor of ``mobilenet_v1_0.25_128_quant.tflite`` has its codes in [1, 255].

Supported: v1 (a chain of conv / depthwise layers). v2 and v3 add bypass (Add) quantization
whose range names are not verified from any public listing; their ``_quant`` checkpoints
still restore as float models (``fake_quant=False`` behaviour) with a note saying so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog.registry import Entry
from ..errors import RestoreError
from .slim_names import SCOPE, Binding

SUPPORTED_FAMILIES = ("v1",)
WEIGHT_BITS = 8


@dataclass(frozen=True)
class QuantPoint:
    """One quantized layer: its slim scope and the checkpoint's ranges (None: no such range)."""

    layer: str                       # slim layer, e.g. "Conv2d_1_depthwise" or "Logits/Conv2d_1c_1x1"
    weights_range: tuple[float, float]
    act_range: tuple[float, float]
    names: tuple[str, ...]           # the checkpoint variables read


def range_scopes(entry: Entry, layer: str) -> tuple[str, ...]:
    """Where contrib.quantize put a layer's ranges, most likely first."""
    scope = SCOPE[entry.family]
    if layer.startswith("Logits/"):
        return (f"{scope}/{layer}", f"{scope}/{scope}/{layer}")
    return (f"{scope}/{scope}/{layer}", f"{scope}/{layer}")


def read_ranges(entry: Entry, prefix: Any, layers: list[str], shapes: dict[str, tuple],
                read: Any) -> list[QuantPoint]:
    """Every layer's weight and activation range, or a RestoreError naming what is wrong.

    ``read(name)`` returns the checkpoint array (the moving-average shadow when the restore
    uses them). Checks: each range exists, is a scalar, finite, and has min <= max.
    """
    points = []
    for layer in layers:
        found: dict[str, tuple[float, float]] = {}
        names: list[str] = []
        for kind in ("weights_quant", "act_quant"):
            candidates = [f"{s}/{kind}" for s in range_scopes(entry, layer)]
            base = next((c for c in candidates if f"{c}/min" in shapes and f"{c}/max" in shapes), None)
            if base is None:
                missing = next((f"{c}/{end}" for c in candidates[:1] for end in ("min", "max")
                                if f"{c}/{end}" not in shapes), candidates[0] + "/min")
                raise RestoreError(
                    f"{entry.id}: checkpoint {prefix.name} has no fake-quant range {missing!r} "
                    f"(layer {layer}); a contrib.quantize checkpoint has one per quantized layer",
                    hint="the checkpoint may be incomplete or a float one: re-fetch it "
                         f"(`mobilenet-zoo verify --repair {entry.id}`), or restore it as a float "
                         "model with fake_quant=False (CLI: --no-fake-quant)")
            low, high = (_scalar(entry, prefix, f"{base}/{end}", shapes, read) for end in ("min", "max"))
            if not low <= high:
                raise RestoreError(
                    f"{entry.id}: fake-quant range {base} has min {low:g} > max {high:g} in {prefix.name}",
                    hint="the checkpoint is corrupt: re-fetch it, or restore with fake_quant=False (--no-fake-quant)")
            found[kind] = (low, high)
            names += [f"{base}/min", f"{base}/max"]
        points.append(QuantPoint(layer, found["weights_quant"], found["act_quant"], tuple(names)))
    return points


def _scalar(entry: Entry, prefix: Any, name: str, shapes: dict[str, tuple], read: Any) -> float:
    if shapes[name] not in ((), (1,)):
        raise RestoreError(f"{entry.id}: fake-quant range {name!r} has shape {list(shapes[name])}, "
                           "expected a scalar (per-tensor ranges)",
                           hint="per-channel quantized checkpoints are not contrib.quantize's: restore "
                                "with fake_quant=False (--no-fake-quant)")
    value = float(np.asarray(read(name)).reshape(()))
    if not np.isfinite(value):
        raise RestoreError(f"{entry.id}: fake-quant range {name!r} is {value} in {prefix.name}",
                           hint="the checkpoint is corrupt: re-fetch it")
    return value


def quantized_layers(entry: Entry, bindings: list[Binding]) -> list[str]:
    """The slim layers with weights, in network order (each gets a weight and an act range)."""
    layers: list[str] = []
    scope = SCOPE[entry.family] + "/"
    for binding in bindings:
        name = binding.slim_name[len(scope):] if binding.slim_name.startswith(scope) else binding.slim_name
        layer = name.split("/BatchNorm/")[0].rsplit("/", 1)[0]
        if layer not in layers:
            layers.append(layer)
    return layers


# ----------------------------------------------------------------------------- the Keras network
def fake_quant_network(entry: Entry, float_model: Any, bindings: list[Binding],
                       points: list[QuantPoint]) -> Any:
    """A new ``keras.Model`` computing the fake-quant graph from a restored float model.

    Each conv (+ batch norm) (+ ReLU6) group of ``float_model`` becomes one
    ``FakeQuantConv``; layers without weights (padding, pooling, reshape, softmax) are copied.
    """
    from .keras_models import import_keras

    keras = import_keras()
    by_layer = {p.layer: p for p in points}
    slim_of = {}  # keras conv layer -> slim layer
    scope = SCOPE[entry.family] + "/"
    for binding in bindings:
        if binding.slim_name.endswith(("weights", "depthwise_weights")):
            slim_of[binding.layer] = binding.slim_name[len(scope):].rsplit("/", 1)[0]
    layers = float_model.layers
    x = inputs = keras.Input(shape=float_model.input_shape[1:], name="images")
    i = 1
    while i < len(layers):
        layer = layers[i]
        if layer.name in slim_of:
            conv = layer
            bn = layers[i + 1] if i + 1 < len(layers) and _is(layers[i + 1], "BatchNormalization") else None
            after = i + 1 + (bn is not None)
            relu = layers[after] if after < len(layers) and _is(layers[after], "ReLU") else None
            point = by_layer[slim_of[conv.name]]
            x = _fake_quant_layer_class().from_layers(conv, bn, relu, point)(x)
            i = after + (relu is not None)
            continue
        if _is(layer, "Dropout"):
            i += 1
            continue
        x = layer.__class__.from_config(layer.get_config())(x)
        i += 1
    model = keras.Model(inputs, x, name=f"{float_model.name}_fake_quant")
    return model


def _is(layer: Any, kind: str) -> bool:
    return type(layer).__name__ == kind


@functools.cache
def _fake_quant_layer_class() -> Any:
    """The Keras layer class, made on first use: importing this module must not import Keras."""
    from .keras_models import import_keras, import_tensorflow

    keras = import_keras()
    tf = import_tensorflow()

    class _FakeQuantConv(keras.layers.Layer):
        """Conv or depthwise conv with batch norm folded, fake-quant weights and output.

        Holds the float (unfolded) kernel and the batch-norm multiplier separately so the fold
        happens in the graph, before the weights are quantized, as ``fold_batch_norms.py`` does.
        """

        def __init__(self, *, depthwise: bool, strides: tuple, padding: str, relu6: bool,
                     kernel_shape: tuple, channels: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.depthwise, self.strides, self.padding, self.relu6 = depthwise, tuple(strides), padding, relu6
            self.kernel_shape, self.channels = tuple(kernel_shape), channels

        def build(self, input_shape: Any) -> None:
            fixed = dict(trainable=False, initializer="zeros")
            self.kernel = self.add_weight(name="kernel", shape=self.kernel_shape, **fixed)
            self.multiplier = self.add_weight(name="fold_multiplier", shape=(self.channels,), **fixed)
            self.bias = self.add_weight(name="bias", shape=(self.channels,), **fixed)
            self.ranges = self.add_weight(name="ranges", shape=(4,), **fixed)  # w min, w max, a min, a max

        def call(self, x: Any) -> Any:
            if self.depthwise:  # kernel [kh, kw, C, 1]: the multiplier scales its C axis
                folded = self.kernel * tf.reshape(self.multiplier, (1, 1, -1, 1))
            else:
                folded = self.kernel * self.multiplier
            weights = tf.quantization.fake_quant_with_min_max_vars(
                folded, self.ranges[0], self.ranges[1], num_bits=WEIGHT_BITS, narrow_range=True)
            strides = (1, *self.strides, 1)
            padding = self.padding.upper()
            if self.depthwise:
                y = tf.nn.depthwise_conv2d(x, weights, strides, padding)
            else:
                y = tf.nn.conv2d(x, weights, strides, padding)
            y = y + self.bias
            if self.relu6:
                y = tf.nn.relu6(y)
            return tf.quantization.fake_quant_with_min_max_vars(
                y, self.ranges[2], self.ranges[3], num_bits=WEIGHT_BITS, narrow_range=False)

        def get_config(self) -> dict:
            return {**super().get_config(), "depthwise": self.depthwise, "strides": self.strides,
                    "padding": self.padding, "relu6": self.relu6, "kernel_shape": self.kernel_shape,
                    "channels": self.channels}

        @classmethod
        def from_layers(cls, conv: Any, bn: Any, relu: Any, point: QuantPoint) -> Any:
            depthwise = _is(conv, "DepthwiseConv2D")
            kernel = np.asarray(conv.kernel, np.float32)  # Keras 3: depthwise [kh, kw, C, 1] too
            channels = kernel.shape[2] * kernel.shape[3] if depthwise else kernel.shape[3]
            if bn is not None:
                gamma = np.asarray(bn.gamma, np.float32) if bn.scale else np.ones(channels, np.float32)
                beta = np.asarray(bn.beta, np.float32) if bn.center else np.zeros(channels, np.float32)
                multiplier = gamma / np.sqrt(np.asarray(bn.moving_variance, np.float32) + bn.epsilon)
                bias = beta - np.asarray(bn.moving_mean, np.float32) * multiplier
            else:
                multiplier = np.ones(channels, np.float32)
                bias = np.asarray(conv.bias, np.float32) if conv.use_bias else np.zeros(channels, np.float32)
            if relu is not None and float(relu.max_value or 0) != 6.0:
                raise RestoreError(f"layer {relu.name}: fake-quant restore expects ReLU6")
            layer = cls(depthwise=depthwise, strides=conv.strides, padding=conv.padding, relu6=relu is not None,
                        kernel_shape=kernel.shape, channels=int(channels),
                        name=point.layer.replace("/", "_") + "_fake_quant")
            layer.build(None)
            layer.kernel.assign(kernel)
            layer.multiplier.assign(multiplier.astype(np.float32))
            layer.bias.assign(bias.astype(np.float32))
            layer.ranges.assign(np.array([*point.weights_range, *point.act_range], np.float32))
            return layer

    return _FakeQuantConv
