"""A contrib.quantize-shaped MobileNet v2 checkpoint made from the real uint8 v2 1.0_224 TFLite file.

The file (``../shared/realdata/mobilenet_v2_1.0_224_quant.tflite``, upstream's
``mobilenet_v2_1.0_224_quant.tgz``; 3.4 MB, so not vendored: tests using it skip without it)
is read op by op: each CONV_2D / DEPTHWISE_CONV_2D gives a slim layer (its scope is the
weight tensor's name before ``/weights_quant``, e.g. ``MobilenetV2/expanded_conv_2/project``),
its dequantized folded kernel and bias, its weight range (codes 1..255: narrow range) and the
range of its output tensor; each ADD gives the block's ``add_quant`` range. What the file shows
(verified): v2's fake-quant points are the ReLU6 outputs, the project outputs (no activation),
the bypass Adds and the logits, with one ``MobilenetV2`` prefix in the op names. Which
*variable* names contrib.quantize gives them is inferred from ``quantize.py`` (``act_quant`` on
a layer's output, ``conv_quant`` on a conv output feeding a bypass Add, ``add_quant`` in the
block's scope): no public listing of a v2 ``_quant`` checkpoint was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .real_weights import save_arrays, unfolded_batch_norm

TFLITE = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "mobilenet_v2_1.0_224_quant.tflite"
CATALOG_ID = "v2_1.0_224_quant"
CHECKPOINT = "v2_224_100/model.ckpt-1000"  # the catalog's layout for this tarball: v2_224_100/model.ckpt-*


@dataclass(frozen=True)
class Layer:
    scope: str                       # without the MobilenetV2/ prefix, e.g. "expanded_conv_2/project"
    kernel: np.ndarray               # folded, dequantized, slim layout
    bias: np.ndarray
    weights_range: tuple[float, float]
    output_kind: str                 # act_quant or conv_quant
    output_range: tuple[float, float]


def _range(t: dict, narrow: bool) -> tuple[float, float]:
    scale, zero = t["quantization"]
    low = 1 if narrow else 0
    return float((low - zero) * scale), float((255 - zero) * scale)


def read_layers(tflite: Path = TFLITE) -> tuple[list[Layer], dict[str, tuple[float, float]]]:
    """(conv layers in network order, block scope -> add_quant range)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    add_inputs = {i for op in ops if op["op_name"] == "ADD" for i in op["inputs"]}
    layers, adds = [], {}
    for op in ops:
        if op["op_name"] == "ADD":
            name = tensors[op["outputs"][0]]["name"].split(";")[0]
            adds[name.removeprefix("MobilenetV2/").removesuffix("/add")] = _range(tensors[op["outputs"][0]], False)
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        _, weight, bias = (tensors[i] for i in op["inputs"])
        out = op["outputs"][0]
        piece = next(p for p in weight["name"].split(";") if "/weights_quant" in p)
        scope = piece.split("/weights_quant")[0].removeprefix("MobilenetV2/")
        scale, zero = weight["quantization"]
        value = (interpreter.get_tensor(weight["index"]).astype(np.float32) - zero) * scale
        kernel = value[0][..., None] if op["op_name"] == "DEPTHWISE_CONV_2D" else value.transpose(1, 2, 3, 0)
        bias_value = interpreter.get_tensor(bias["index"]).astype(np.float32) * bias["quantization"][0]
        kind = "conv_quant" if out in add_inputs else "act_quant"
        layers.append(Layer(scope, kernel, bias_value, _range(weight, True), kind, _range(tensors[out], False)))
    return layers, adds


def checkpoint_arrays(tflite: Path = TFLITE, seed: int = 11) -> dict[str, np.ndarray]:
    """Slim v2 variables (random batch norm, unfolded as in ``real_weights.quant_checkpoint_arrays``)
    plus the ranges under the inferred names ``MobilenetV2/<scope>/<kind>/{min,max}``."""
    rng = np.random.default_rng(seed)
    layers, adds = read_layers(tflite)
    out: dict[str, np.ndarray] = {"global_step": np.array(1000, np.float32)}
    for q in layers:
        scope = f"MobilenetV2/{q.scope}"
        if q.scope.startswith("Logits"):
            out[f"{scope}/weights"], out[f"{scope}/biases"] = q.kernel, q.bias
        else:
            out.update(unfolded_batch_norm(scope, q.kernel, q.bias, q.scope.endswith("depthwise"), rng))
        for kind, (low, high) in (("weights_quant", q.weights_range), (q.output_kind, q.output_range)):
            out[f"{scope}/{kind}/min"], out[f"{scope}/{kind}/max"] = np.float32(low), np.float32(high)
    for block, (low, high) in adds.items():
        out[f"MobilenetV2/{block}/add_quant/min"], out[f"MobilenetV2/{block}/add_quant/max"] = \
            np.float32(low), np.float32(high)
    return out


def write_checkpoint(directory: Path, tflite: Path = TFLITE) -> Path:
    """``<directory>/v2_224_100/model.ckpt-1000.*`` and the real file as ``v2_224_100/model.tflite``."""
    import shutil

    prefix = Path(directory) / CHECKPOINT
    prefix.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tflite, prefix.parent / "model.tflite")
    return save_arrays(prefix, checkpoint_arrays(tflite))
