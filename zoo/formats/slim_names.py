"""Which TF-slim checkpoint variable fills which Keras weight, family by family.

Slim names come from ``research/slim/nets/mobilenet_v1.py`` (scope ``MobilenetV1``) and
``research/slim/nets/mobilenet/{mobilenet,mobilenet_v2,mobilenet_v3,conv_blocks}.py``
(scopes ``MobilenetV2`` / ``MobilenetV3`` / ``MobilenetEdgeTPU``); Keras names from
``keras.applications`` and, for EdgeTPU, ``keras_edgetpu``.
Every Keras layer with weights must match a rule below (the first match wins), so a Keras release
that renames a layer fails loudly here instead of leaving random weights in place.

Layouts line up without transposes: slim ``weights`` [k, k, in, out] = Keras Conv2D
kernel; slim ``depthwise_weights`` [k, k, in, 1] = Keras DepthwiseConv2D kernel. The one
reshape is v2's classifier: slim keeps a 1x1 conv [1, 1, 1280, 1001], Keras a Dense
[1280, 1001]. Batch norm: gamma/beta/moving_mean/moving_variance keep their names.

One constant differs: slim's v3 squeeze-excite gate is ``relu6(x + 3) * 0.16667``
(``mobilenet_v3.py``), Keras' is ``relu6(x + 3) / 6``. The gate multiplies the features
that enter the linear ``project`` conv, so scaling that conv's kernel by
``6 * 0.16667`` gives slim's output (up to float rounding). Without it, tiny random test nets already
drift by 1e-3 in probability.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..catalog.registry import Entry
from ..errors import RestoreError

SCOPE = {"v1": "MobilenetV1", "v2": "MobilenetV2", "v3": "MobilenetV3", "edgetpu": "MobilenetEdgeTPU"}

# (Keras layer name pattern, slim scope template). Templates use the pattern's groups.
_V1_RULES = [
    (r"conv1", "Conv2d_0"),
    (r"conv1_bn", "Conv2d_0/BatchNorm"),
    (r"conv_dw_(\d+)", "Conv2d_{0}_depthwise"),
    (r"conv_dw_(\d+)_bn", "Conv2d_{0}_depthwise/BatchNorm"),
    (r"conv_pw_(\d+)", "Conv2d_{0}_pointwise"),
    (r"conv_pw_(\d+)_bn", "Conv2d_{0}_pointwise/BatchNorm"),
    (r"conv_preds", "Logits/Conv2d_1c_1x1"),
]
_V2_RULES = [
    (r"Conv1", "Conv"),
    (r"bn_Conv1", "Conv/BatchNorm"),
    (r"expanded_conv_(depthwise|project)", "expanded_conv/{0}"),
    (r"expanded_conv_(depthwise|project)_BN", "expanded_conv/{0}/BatchNorm"),
    (r"block_(\d+)_(expand|depthwise|project)", "expanded_conv_{0}/{1}"),
    (r"block_(\d+)_(expand|depthwise|project)_BN", "expanded_conv_{0}/{1}/BatchNorm"),
    (r"Conv_1", "Conv_1"),
    (r"Conv_1_bn", "Conv_1/BatchNorm"),
    (r"predictions", "Logits/Conv2d_1c_1x1"),
]
_V3_RULES = [
    (r"conv", "Conv"),
    (r"conv_bn", "Conv/BatchNorm"),
    (r"(expanded_conv(?:_\d+)?)_(expand|depthwise|project)", "{0}/{1}"),
    (r"(expanded_conv(?:_\d+)?)_(expand|depthwise|project)_bn", "{0}/{1}/BatchNorm"),
    (r"(expanded_conv(?:_\d+)?)_squeeze_excite_conv", "{0}/squeeze_excite/Conv"),
    (r"(expanded_conv(?:_\d+)?)_squeeze_excite_conv_1", "{0}/squeeze_excite/Conv_1"),
    (r"conv_1", "Conv_1"),  # last 1x1 conv with batch norm (960 / 576 channels)
    (r"conv_1_bn", "Conv_1/BatchNorm"),
    (r"conv_2", "Conv_2"),  # 1280 / 1024 conv after pooling: biases, no batch norm
    (r"logits", "Logits/Conv2d_1c_1x1"),
]
# keras_edgetpu names its layers like Keras' MobileNetV3 (it has no conv_2 / SE layers).
RULES = {"v1": _V1_RULES, "v2": _V2_RULES, "v3": _V3_RULES, "edgetpu": _V3_RULES}

# Ratio of slim's squeeze-excite gate constant to Keras' 1/6 (see the module docstring).
SLIM_GATE_RATIO = 6 * 0.16667
_V3_PROJECT = re.compile(r"(expanded_conv(?:_\d+)?)_project")

# Keras weight name -> slim variable name (the kernel depends on the layer type).
_BN_NAMES = {"gamma": "gamma", "beta": "beta", "moving_mean": "moving_mean",
             "moving_variance": "moving_variance"}


@dataclass(frozen=True)
class Binding:
    """One Keras weight and the checkpoint variable that fills it."""

    slim_name: str               # e.g. MobilenetV1/Conv2d_1_depthwise/depthwise_weights
    slim_shape: tuple[int, ...]  # the shape the checkpoint must hold
    layer: str                   # Keras layer name
    variable: Any                # the keras.Variable to assign
    to_keras: Callable[[Any], Any]  # checkpoint array -> Keras array (identity, reshape, SE scale)


def slim_scope(family: str, layer_name: str) -> str | None:
    """The slim variable scope for a Keras layer name, or None if no rule matches."""
    for pattern, template in RULES[family]:
        match = re.fullmatch(pattern, layer_name)
        if match:
            return f"{SCOPE[family]}/" + template.format(*match.groups())
    return None


def bindings_for(entry: Entry, model: Any) -> list[Binding]:
    """Every weight of ``model`` paired with its slim checkpoint name and expected shape."""
    if entry.family not in RULES:
        raise RestoreError(f"{entry.id}: no slim name mapping for family {entry.family!r}")
    out: list[Binding] = []
    layer_names = {layer.name for layer in model.layers}
    for layer in model.layers:
        if not layer.weights:
            continue
        scope = slim_scope(entry.family, layer.name)
        if scope is None:
            raise RestoreError(
                f"{entry.id}: Keras layer {layer.name!r} has no slim counterpart in the mapping",
                hint="the installed Keras may have renamed its MobileNet layers; "
                     "see zoo/formats/slim_names.py")
        kind = type(layer).__name__
        for var in layer.weights:
            short = var.name.split("/")[-1]
            shape = tuple(int(d) for d in var.shape)
            to_keras: Callable[[Any], Any] = _same
            if short in _BN_NAMES:
                name = _BN_NAMES[short]
            elif short == "bias":
                name = "biases"
            elif short in ("kernel", "depthwise_kernel"):
                name = "depthwise_weights" if kind == "DepthwiseConv2D" else "weights"
                block = _V3_PROJECT.fullmatch(layer.name) if entry.family == "v3" else None
                if block and f"{block.group(1)}_squeeze_excite_conv" in layer_names:
                    to_keras = _scaler(SLIM_GATE_RATIO)
                if kind == "Dense":  # slim's classifier is a 1x1 conv
                    slim_shape = (1, 1) + shape
                    out.append(Binding(f"{scope}/{name}", slim_shape, layer.name, var,
                                       _reshaper(shape)))
                    continue
            else:
                raise RestoreError(f"{entry.id}: unexpected Keras weight {var.path!r} in layer "
                                   f"{layer.name!r}")
            out.append(Binding(f"{scope}/{name}", shape, layer.name, var, to_keras))
    return out


def _same(array: Any) -> Any:
    return array


def _scaler(factor: float) -> Callable[[Any], Any]:
    return lambda array: array * np.float32(factor)


def _reshaper(shape: tuple[int, ...]) -> Callable[[Any], Any]:
    return lambda array: array.reshape(shape)
