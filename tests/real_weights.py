"""A small MobileNet v1 checkpoint with *real* ImageNet weights, built from a real TFLite file.

No float checkpoint can be downloaded here, but the vendored upstream
``mobilenet_v1_0.25_128_quant.tflite`` carries real trained weights. Dequantized
(``(q - zero_point) * scale``) and written under the slim variable names of an upstream
v1 checkpoint, they make a checkpoint that ``zoo.formats.ckpt`` restores like a
published one. The TFLite file has batch norm folded into the convolutions, so each
BatchNorm gets gamma 1, beta = the folded bias, moving mean 0 and moving variance
``1 - eps`` (eps = 1e-3, slim's and Keras' MobileNet v1 value): then
``gamma * (x - mean) / sqrt(var + eps) + beta == x + bias`` exactly.

Layouts: TFLite conv kernels are [out, kh, kw, in] and depthwise kernels [1, kh, kw, C];
slim's are [kh, kw, in, out] and [kh, kw, C, 1]. Biases are int32 with scale
``input_scale * weight_scale`` (stored in the tensor's own quantization parameters).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .slim_builders import assign

TFLITE = Path(__file__).parent / "data" / "mobilenet_v1_0.25_128_quant.tflite"
CATALOG_ID = "v1_0.25_128"  # the float model with this architecture
EPSILON = 1e-3
_WEIGHTS = re.compile(r"MobilenetV1/(?:MobilenetV1/)?(Conv2d_\d+(?:_depthwise|_pointwise)?|Logits/Conv2d_1c_1x1)/"
                      r"(?:weights_quant|Conv2D|depthwise|Conv2D_Fold|depthwise_Fold)")
_BIAS = re.compile(r"MobilenetV1/(?:MobilenetV1/)?(Conv2d_\d+(?:_depthwise|_pointwise)?)/BatchNorm_Fold/bias$")
_LOGITS_BIAS = re.compile(r"MobilenetV1/Logits/Conv2d_1c_1x1/biases")


def dequantized_layers(tflite: Path = TFLITE) -> dict[str, dict[str, np.ndarray]]:
    """slim layer scope -> {"kernel": float array in slim layout, "bias": float array}."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    layers: dict[str, dict[str, np.ndarray]] = {}
    for t in interpreter.get_tensor_details():
        name, shape = t["name"], tuple(int(d) for d in t["shape"])
        scale, zero = t["quantization"]
        try:
            raw = interpreter.get_tensor(t["index"])
        except ValueError:  # activations have no data before invoke
            continue
        if t["dtype"] == np.uint8 and len(shape) == 4 and "weights_quant" in name:
            scope = _WEIGHTS.search(name.split(";")[-1]) or _WEIGHTS.search(name)
            value = (raw.astype(np.float32) - zero) * scale
            layer = scope.group(1)
            if "depthwise" in layer:
                kernel = value[0][..., None]                    # [1,kh,kw,C] -> [kh,kw,C,1]
            else:
                kernel = value.transpose(1, 2, 3, 0)            # [out,kh,kw,in] -> [kh,kw,in,out]
            layers.setdefault(layer, {})["kernel"] = kernel
        elif t["dtype"] == np.int32 and len(shape) == 1:
            match = _BIAS.search(name)
            if _LOGITS_BIAS.search(name):
                layers.setdefault("Logits/Conv2d_1c_1x1", {})["bias"] = raw.astype(np.float32) * scale
            elif match:
                layers.setdefault(match.group(1), {})["bias"] = raw.astype(np.float32) * scale
    return layers


def checkpoint_arrays(tflite: Path = TFLITE) -> dict[str, np.ndarray]:
    """Every variable of an upstream-shaped v1 checkpoint (slim names), BN folded into bias."""
    out: dict[str, np.ndarray] = {}
    for layer, parts in dequantized_layers(tflite).items():
        scope = f"MobilenetV1/{layer}"
        if layer.startswith("Logits"):
            out[f"{scope}/weights"] = parts["kernel"]
            out[f"{scope}/biases"] = parts["bias"]
            continue
        name = "depthwise_weights" if layer.endswith("depthwise") else "weights"
        out[f"{scope}/{name}"] = parts["kernel"]
        depth = parts["bias"].shape[0]
        out[f"{scope}/BatchNorm/gamma"] = np.ones(depth, np.float32)
        out[f"{scope}/BatchNorm/beta"] = parts["bias"]
        out[f"{scope}/BatchNorm/moving_mean"] = np.zeros(depth, np.float32)
        out[f"{scope}/BatchNorm/moving_variance"] = np.full(depth, 1.0 - EPSILON, np.float32)
    return out


def write_checkpoint(directory: Path, tflite: Path = TFLITE) -> Path:
    """Write ``<directory>/mobilenet_v1_0.25_128.ckpt.*`` and return the prefix."""
    import tensorflow as tf

    arrays = checkpoint_arrays(tflite)
    expected = 1 + 13 * 2 + 1  # Conv2d_0, 13 depthwise + pointwise pairs, logits
    layers = {name.rsplit("/", 2)[0] if "BatchNorm" in name else name.rsplit("/", 1)[0] for name in arrays}
    assert len(layers) == expected, f"found {len(layers)} layers in {tflite}, expected {expected}"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / "mobilenet_v1_0.25_128.ckpt"
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.Variable(tf.zeros(value.shape, tf.float32), name="v")
                     for name, value in arrays.items()}
        with tf.compat.v1.Session(graph=graph) as session:
            assign(session, {variables[name]: value.astype(np.float32) for name, value in arrays.items()})
            tf.compat.v1.train.Saver(variables).save(session, str(prefix), write_meta_graph=False,
                                                     write_state=False)
    return prefix
