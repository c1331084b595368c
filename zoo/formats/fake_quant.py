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
* v2 (bypass quantization, ``quantize.py``): a conv output without activation gets
  ``conv_quant`` when it feeds a bypass Add, else ``act_quant``; the Add gets ``add_quant`` in
  the block's scope (``MobilenetV2/expanded_conv_2/add_quant``). The *places* are verified from
  the real ``mobilenet_v2_1.0_224_quant.tflite`` (its project and Add outputs carry their own
  scales); the variable *names* are inferred (no public listing of a v2 ``_quant`` checkpoint),
  so either ``conv_quant`` or ``act_quant`` is accepted on a project output.

Supported: v1 and v2. v3 (hard-swish, squeeze-excite) and EdgeTPU quantized checkpoints restore
as float models with a note: where their fake-quant ops sit is not known from a public source.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog.registry import Entry
from ..errors import RestoreError
from .slim_names import SCOPE, Binding

SUPPORTED_FAMILIES = ("v1", "v2")
BITS = 8  # contrib.quantize's default for weights and activations


@dataclass(frozen=True)
class RangeUse:
    """One fake-quant op: the Keras layer it follows, and the checkpoint range it reads."""

    keras_layer: str                 # the float model's layer whose output (or weights) it quantizes
    scope: str                       # slim scope without the model prefix, e.g. "expanded_conv_2/project"
    kind: str                        # weights_quant | act_quant | conv_quant | add_quant
    relu: bool = False               # the output of a ReLU6 (always act_quant)


# quantize.py puts ``conv_quant`` on a conv output feeding a bypass Add, ``act_quant`` on one that
# does not; a project output that is also the *next* block's bypass input matches both patterns,
# so either name is accepted for conv outputs without activation.
_OTHER_OUTPUT_KIND = {"conv_quant": ("act_quant",), "act_quant": ("conv_quant",)}


def range_scopes(entry: Entry, scope: str) -> tuple[str, ...]:
    """Where contrib.quantize put a scope's ranges, most likely first.

    v1 builds its layers inside a second ``MobilenetV1`` name scope (tensorflow/models#7774),
    its classifier outside it; v2's TFLite tensor names carry one ``MobilenetV2`` prefix.
    """
    model = SCOPE[entry.family]
    if entry.family == "v1" and not scope.startswith("Logits/"):
        return (f"{model}/{model}/{scope}", f"{model}/{scope}")
    return (f"{model}/{scope}", f"{model}/{model}/{scope}")


def read_ranges(entry: Entry, prefix: Any, uses: list[RangeUse], shapes: dict[str, tuple],
                read: Any) -> dict[tuple[str, str], tuple[float, float]]:
    """(scope, kind) -> (min, max) for every use, or a RestoreError naming what is wrong.

    ``read(name)`` returns the checkpoint array (the moving-average shadow when the restore
    uses them). Checks: each range exists, is a scalar, finite, and has min <= max.
    """
    ranges: dict[tuple[str, str], tuple[float, float]] = {}
    after_relu = {u.keras_layer for u in uses if u.relu}
    for use in uses:
        key = (use.scope, use.kind)
        if key in ranges:
            continue
        # a conv output without activation that feeds a bypass: conv_quant or act_quant (see quant_plan)
        kinds = (use.kind, *_OTHER_OUTPUT_KIND.get(use.kind, ())) if use.keras_layer not in after_relu else (use.kind,)
        candidates = [f"{s}/{kind}" for kind in kinds for s in range_scopes(entry, use.scope)]
        base = next((c for c in candidates if f"{c}/min" in shapes and f"{c}/max" in shapes), None)
        if base is None:
            missing = next((f"{candidates[0]}/{end}" for end in ("min", "max")
                            if f"{candidates[0]}/{end}" not in shapes), candidates[0] + "/min")
            raise RestoreError(
                f"{entry.id}: checkpoint {prefix.name} has no fake-quant range {missing!r} "
                f"(layer {use.scope}); a contrib.quantize checkpoint has one per quantized tensor",
                hint="the checkpoint may be incomplete or a float one: re-fetch it "
                     f"(`mobilenet-zoo verify --repair {entry.id}`), or restore it as a float "
                     "model with fake_quant=False (CLI: --no-fake-quant)")
        low, high = (_scalar(entry, prefix, f"{base}/{end}", shapes, read) for end in ("min", "max"))
        if not low <= high:
            raise RestoreError(
                f"{entry.id}: fake-quant range {base} has min {low:g} > max {high:g} in {prefix.name}",
                hint="the checkpoint is corrupt: re-fetch it, or restore with fake_quant=False (--no-fake-quant)")
        ranges[key] = (low, high)
    return ranges


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


# ----------------------------------------------------------------------------- where the ops go
def quant_plan(entry: Entry, float_model: Any, bindings: list[Binding]) -> list[RangeUse]:
    """Every fake-quant op of the network, in layer order (``quantize.py``'s placement rules).

    Each conv / depthwise / dense layer: ``weights_quant`` on its folded weights. Its output:
    ``act_quant`` after the ReLU6 that follows its batch norm; without one, ``conv_quant`` when
    it feeds a bypass Add, else ``act_quant`` (the logits, v2's project layers). Each bypass
    Add: ``add_quant`` in the block's scope (the project layer's parent).
    """
    model_scope = SCOPE[entry.family] + "/"
    slim_of = {b.layer: b.slim_name[len(model_scope):].rsplit("/", 1)[0] for b in bindings
               if b.slim_name.endswith(("weights", "depthwise_weights"))}
    consumers = _consumers(float_model)
    uses: list[RangeUse] = []
    feeding: dict[str, str] = {}  # a BN / ReLU / conv layer -> the slim scope of the conv it follows
    for layer in float_model.layers:
        name = layer.name
        if name in slim_of:
            scope = slim_of[name]
            uses.append(RangeUse(name, scope, "weights_quant"))
            after = consumers.get(name, [])
            end = name
            if len(after) == 1 and _is(after[0], "BatchNormalization"):
                end = after[0].name
                feeding[end] = scope
                after = consumers.get(end, [])
            feeding[name] = scope
            if len(after) == 1 and _is(after[0], "ReLU"):
                feeding[after[0].name] = scope
                uses.append(RangeUse(after[0].name, scope, "act_quant", relu=True))
            else:
                kind = "conv_quant" if any(_is(c, "Add") for c in after) else "act_quant"
                uses.append(RangeUse(end, scope, kind))
        elif _is(layer, "Add"):
            # the block's own branch is the input made last (the other is the block's input)
            order = {l.name: i for i, l in enumerate(float_model.layers)}
            branch = [p for p in _producers(layer) if p in feeding]
            if not branch:
                raise RestoreError(f"{entry.id}: cannot place the fake-quant op of {name}: no conv layer feeds it")
            scope = feeding[max(branch, key=order.__getitem__)]
            uses.append(RangeUse(name, scope.rsplit("/", 1)[0], "add_quant"))
    return uses


def quantization_points(uses: list[RangeUse]) -> tuple[str, ...]:
    """The slim scopes that have ranges, in network order (for ``restore``'s summary)."""
    return tuple(dict.fromkeys(u.scope + ("/add" if u.kind == "add_quant" else "") for u in uses))


def _consumers(model: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for layer in model.layers:
        for producer in _producers(layer):
            out.setdefault(producer, []).append(layer)
    return out


def _producers(layer: Any) -> list[str]:
    names = []
    for node in layer._inbound_nodes:
        for tensor in node.input_tensors:
            names.append(tensor._keras_history.operation.name)
    return names


# ----------------------------------------------------------------------------- the Keras network
def fake_quant_network(float_model: Any, uses: list[RangeUse],
                       ranges: dict[tuple[str, str], tuple[float, float]] | None, *, learn: bool = False) -> Any:
    """A new ``keras.Model`` computing the fake-quant graph from a restored float model.

    The float model's graph is cloned layer for layer: each conv / dense layer becomes a
    ``FakeQuantConv`` holding its batch norm's fold (the batch norm itself becomes an identity),
    and a layer whose output is quantized gets the fake-quant op after it. The rest (padding,
    pooling, reshape, softmax) is copied.

    ``ranges`` None: no range is known yet (quantization-aware training of a float model); the
    network must see data in training mode (``learn``) before its outputs mean anything.
    ``learn``: the ranges follow the data in training mode (see ``_layer_classes``) and the
    kernels are trainable; otherwise the whole network is frozen, a restored checkpoint.
    """
    from .keras_models import import_keras

    keras = import_keras()
    classes = _layer_classes()
    known = ranges is not None

    def range_of(use: RangeUse) -> tuple[float, float] | None:
        return ranges[(use.scope, use.kind)] if known else None

    weights = {u.keras_layer: range_of(u) for u in uses if u.kind == "weights_quant"}
    outputs = {u.keras_layer: range_of(u) for u in uses if u.kind != "weights_quant"}
    consumers = _consumers(float_model)
    batch_norm_of = {name: c for name in weights for c in consumers.get(name, []) if _is(c, "BatchNormalization")}
    folded = {bn.name for bn in batch_norm_of.values()}

    def clone(layer: Any) -> Any:
        name = layer.name
        if name in weights:
            bn = batch_norm_of.get(name)
            quantize_output = bn is None and name in outputs  # else: after the folded batch norm
            return classes["conv"].from_layers(layer, bn, weights[name], quantize_output,
                                               outputs.get(name) if quantize_output else None, learn=learn)
        if name in folded or name in outputs:
            return classes["output"](name in outputs, outputs.get(name), relu6=_is(layer, "ReLU"),
                                     add=_is(layer, "Add"), learn_ranges=learn, name=name)
        return layer.__class__.from_config(layer.get_config())

    model = keras.models.clone_model(float_model, clone_function=clone)
    model.name = f"{float_model.name}_fake_quant"
    if not learn:
        model.trainable = False
    return model


def fake_quant_layers(model: Any) -> list[Any]:
    """The fake-quant layers of a model, nested models included (empty for a float model)."""
    kinds = tuple(_layer_classes().values())
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, kinds)]


def start_learning(model: Any) -> None:
    """Let a restored fake-quant network's ranges follow the data from now on (fine-tuning it):
    they continue from the checkpoint's, as moving averages."""
    for layer in fake_quant_layers(model):
        layer.learn_ranges = True
    model.trainable = True


def fake_quant_dense(units: int, inputs: int, *, name: str, activation: str = "softmax", seed: int = 0) -> Any:
    """A new classifier for quantization-aware training: weights and logits fake-quantized, as
    contrib.quantize treats slim's ``Logits`` layer; its ranges are learned (none yet)."""
    from .keras_models import import_keras

    keras = import_keras()
    dense = keras.layers.Dense(units, activation=activation, name=name,
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
    dense.build((None, inputs))
    return _layer_classes()["conv"].from_layers(dense, None, None, True, None, learn=True)


def calibrate(model: Any, batches: Any) -> int:
    """Set a learning network's ranges from data before training: each range becomes the mean of
    the batches' extremes. Returns the number of batches seen."""
    seen = 0
    for batch in batches:
        model(batch, training=True)
        seen += 1
    return seen


def register_layers() -> None:
    """Make the fake-quant layers known to ``keras.saving`` (before loading a file that has them)."""
    _layer_classes()


def _is(layer: Any, kind: str) -> bool:
    return type(layer).__name__ == kind


# Activation ranges while training: the running mean of each batch's min / max for the first
# 1000 batches, then contrib.quantize's exponential moving average (decay 0.999, quant_ops.py).
# A range read from a checkpoint counts as settled: it moves at the 0.999 rate from the start.
EMA_DECAY = 0.999
SETTLED_UPDATES = 1e6


@functools.cache
def _layer_classes() -> dict[str, Any]:
    """The Keras layer classes, made on first use: importing this module must not import Keras."""
    from .keras_models import import_keras, import_tensorflow

    keras = import_keras()
    tf = import_tensorflow()

    def fake_quant(x: Any, bounds: Any, narrow_range: bool) -> Any:
        return tf.quantization.fake_quant_with_min_max_vars(x, bounds[0], bounds[1], num_bits=BITS,
                                                            narrow_range=narrow_range)

    def extremes(x: Any) -> Any:
        """A tensor's (min, max), widened to hold 0 (a quantized range always represents zero)."""
        x = tf.stop_gradient(x)
        return tf.stack([tf.minimum(tf.reduce_min(x), 0.0), tf.maximum(tf.reduce_max(x), 0.0)])

    def follow(bounds: Any, updates: Any, x: Any) -> Any:
        """Move an activation range towards this batch's extremes; the range to use now."""
        decay = tf.minimum(EMA_DECAY, updates / (updates + 1.0))
        bounds.assign(decay * bounds + (1.0 - decay) * extremes(x))
        updates.assign_add(1.0)
        return bounds

    def range_weights(layer: Any, name: str, initial: tuple[float, float] | None) -> tuple[Any, Any]:
        bounds = layer.add_weight(name=name, shape=(2,), trainable=False, initializer="zeros", aggregation="mean")
        updates = layer.add_weight(name=name + "_updates", shape=(), trainable=False, initializer="zeros",
                                   aggregation="only_first_replica")
        if initial is not None:
            bounds.assign(np.asarray(initial, np.float32))
            updates.assign(SETTLED_UPDATES)
        return bounds, updates

    @keras.saving.register_keras_serializable(package="mobilenet_zoo")
    class FakeQuantConv(keras.layers.Layer):
        """A conv, depthwise conv or dense layer with its batch norm folded and fake-quant weights
        (and, without a batch norm after it, fake-quant output).

        Holds the float (unfolded) kernel and the batch-norm multiplier separately so the fold
        happens in the graph, before the weights are quantized, as ``fold_batch_norms.py`` does.
        With ``learn_ranges``, a training call sets the weights' range to the folded weights'
        extremes (contrib.quantize's ``LastValueQuantize``) and moves the output's range.
        """

        def __init__(self, *, kind: str, strides: tuple = (1, 1), padding: str = "valid", activation: str = "linear",
                     kernel_shape: tuple = (), channels: int = 0, quantize_output: bool = False,
                     learn_ranges: bool = False, bias_trainable: bool = False, **kwargs: Any):
            super().__init__(**kwargs)
            self.kind, self.strides, self.padding, self.activation = kind, tuple(strides), padding, activation
            self.kernel_shape, self.channels, self.quantize_output = tuple(kernel_shape), channels, quantize_output
            self.learn_ranges, self.bias_trainable = learn_ranges, bias_trainable

        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(name="kernel", shape=self.kernel_shape, initializer="zeros")
            # the batch norm's fold stays fixed (batch norm is frozen when fine-tuning, as for float models)
            self.multiplier = self.add_weight(name="fold_multiplier", shape=(self.channels,), trainable=False,
                                              initializer="ones")
            self.bias = self.add_weight(name="bias", shape=(self.channels,), trainable=self.bias_trainable,
                                        initializer="zeros")
            self.weights_range, self.weights_updates = range_weights(self, "weights_range", None)
            if self.quantize_output:
                self.output_range, self.output_updates = range_weights(self, "output_range", None)

        def call(self, x: Any, training: Any = None, mask: Any = None) -> Any:  # mask: clone_model passes one
            if self.kind == "depthwise":  # kernel [kh, kw, C, 1]: the multiplier scales its C axis
                folded = self.kernel * tf.reshape(self.multiplier, (1, 1, -1, 1))
            else:
                folded = self.kernel * self.multiplier
            bounds = self.weights_range
            if self.learn_ranges and training:
                bounds.assign(extremes(folded))
                self.weights_updates.assign_add(1.0)
            weights = fake_quant(folded, bounds, narrow_range=True)
            strides, padding = (1, *self.strides, 1), self.padding.upper()
            if self.kind == "depthwise":
                y = tf.nn.depthwise_conv2d(x, weights, strides, padding)
            elif self.kind == "conv":
                y = tf.nn.conv2d(x, weights, strides, padding)
            else:
                y = tf.matmul(x, weights)
            y = y + self.bias
            if self.quantize_output:
                out = self.output_range
                if self.learn_ranges and training:
                    out = follow(out, self.output_updates, y)
                y = fake_quant(y, out, narrow_range=False)
            return keras.activations.get(self.activation)(y)

        def get_config(self) -> dict:
            return {**super().get_config(), "kind": self.kind, "strides": self.strides, "padding": self.padding,
                    "activation": self.activation, "kernel_shape": self.kernel_shape, "channels": self.channels,
                    "quantize_output": self.quantize_output, "learn_ranges": self.learn_ranges,
                    "bias_trainable": self.bias_trainable}

        @classmethod
        def from_layers(cls, layer: Any, bn: Any, weights_range: tuple[float, float] | None, quantize_output: bool,
                        out_range: tuple[float, float] | None, *, learn: bool = False) -> Any:
            """From a built float layer and its batch norm; a range None is unknown yet (learned)."""
            kind = {"DepthwiseConv2D": "depthwise", "Conv2D": "conv", "Dense": "dense"}[type(layer).__name__]
            kernel = np.asarray(layer.kernel, np.float32)  # Keras 3: depthwise [kh, kw, C, 1] too
            channels = kernel.shape[2] * kernel.shape[3] if kind == "depthwise" else kernel.shape[-1]
            if bn is not None:
                gamma = np.asarray(bn.gamma, np.float32) if bn.scale else np.ones(channels, np.float32)
                beta = np.asarray(bn.beta, np.float32) if bn.center else np.zeros(channels, np.float32)
                multiplier = gamma / np.sqrt(np.asarray(bn.moving_variance, np.float32) + bn.epsilon)
                bias = beta - np.asarray(bn.moving_mean, np.float32) * multiplier
            else:
                multiplier = np.ones(channels, np.float32)
                bias = np.asarray(layer.bias, np.float32) if layer.use_bias else np.zeros(channels, np.float32)
            activation = keras.activations.serialize(layer.activation) if hasattr(layer, "activation") else "linear"
            activation = activation if isinstance(activation, str) else activation.get("config", "linear")
            new = cls(kind=kind, strides=getattr(layer, "strides", (1, 1)), padding=getattr(layer, "padding", "valid"),
                      activation=activation, kernel_shape=kernel.shape, channels=int(channels),
                      quantize_output=quantize_output, learn_ranges=learn, bias_trainable=learn and bn is None,
                      name=layer.name)
            new.build(None)
            new.kernel.assign(kernel)
            new.multiplier.assign(multiplier.astype(np.float32))
            new.bias.assign(bias.astype(np.float32))
            if weights_range is None:  # the folded weights' own extremes until training moves them
                weights_range = tuple(np.asarray(extremes(kernel * _fold_shape(multiplier, kind))))
            new.weights_range.assign(np.asarray(weights_range, np.float32))
            new.weights_updates.assign(SETTLED_UPDATES)
            if out_range is not None:
                new.output_range.assign(np.asarray(out_range, np.float32))
                new.output_updates.assign(SETTLED_UPDATES)
            return new

    def _fold_shape(multiplier: np.ndarray, kind: str) -> np.ndarray:
        return multiplier.reshape(1, 1, -1, 1) if kind == "depthwise" else multiplier

    @keras.saving.register_keras_serializable(package="mobilenet_zoo")
    class FakeQuantOutput(keras.layers.Layer):
        """Identity (a folded batch norm), ReLU6 or Add, then the output's fake-quant op if it has one."""

        def __init__(self, quantized: bool = False, out_range: tuple[float, float] | None = None, *,
                     relu6: bool = False, add: bool = False, learn_ranges: bool = False, **kwargs: Any):
            super().__init__(**kwargs)
            self.quantized, self.relu6, self.add, self.learn_ranges = quantized, relu6, add, learn_ranges
            self.initial = None if out_range is None else tuple(float(v) for v in out_range)
            if quantized:
                self.output_range, self.output_updates = range_weights(self, "output_range", self.initial)

        def call(self, x: Any, training: Any = None, mask: Any = None) -> Any:  # mask: clone_model passes one
            if self.add:  # pairwise tf.add: the converter quantizes ADD, not ADD_N
                y = x[0]
                for other in x[1:]:
                    y = tf.add(y, other)
            else:
                y = x
            if self.relu6:
                y = tf.nn.relu6(y)
            if self.quantized:
                out = self.output_range
                if self.learn_ranges and training:
                    out = follow(out, self.output_updates, y)
                y = fake_quant(y, out, narrow_range=False)
            return y

        def get_config(self) -> dict:
            return {**super().get_config(), "quantized": self.quantized, "out_range": self.initial,
                    "relu6": self.relu6, "add": self.add, "learn_ranges": self.learn_ranges}

    return {"conv": FakeQuantConv, "output": FakeQuantOutput}
