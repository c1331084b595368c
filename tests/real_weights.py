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
from dataclasses import dataclass
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
    arrays = checkpoint_arrays(tflite)
    expected = 1 + 13 * 2 + 1  # Conv2d_0, 13 depthwise + pointwise pairs, logits
    layers = {name.rsplit("/", 2)[0] if "BatchNorm" in name else name.rsplit("/", 1)[0] for name in arrays}
    assert len(layers) == expected, f"found {len(layers)} layers in {tflite}, expected {expected}"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return save_arrays(directory / "mobilenet_v1_0.25_128.ckpt", arrays)


def save_arrays(prefix: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (name -> value) as a TF1 checkpoint at ``prefix`` (slim's own format)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.Variable(tf.zeros(value.shape, tf.float32), name="v")
                     for name, value in arrays.items()}
        with tf.compat.v1.Session(graph=graph) as session:
            assign(session, {variables[name]: np.asarray(value, np.float32) for name, value in arrays.items()})
            tf.compat.v1.train.Saver(variables).save(session, str(prefix), write_meta_graph=False,
                                                     write_state=False)
    return prefix


# ----------------------------------------------------------------------------- the _quant checkpoint
QUANT_CATALOG_ID = "v1_0.25_128_quant"
QUANT_STEM = "mobilenet_v1_0.25_128_quant"


@dataclass(frozen=True)
class QuantLayer:
    """One layer of the real uint8 file as the fake-quant graph sees it (folded, float)."""

    layer: str                        # slim scope, e.g. "Conv2d_1_depthwise"
    kernel: np.ndarray                # folded, dequantized, slim layout
    bias: np.ndarray
    weights_range: tuple[float, float]
    act_range: tuple[float, float]


def quant_layers(tflite: Path = TFLITE) -> list[QuantLayer]:
    """Each layer's folded weights and the ranges the uint8 file's scales and zero points give.

    Weights use codes 1..255 (narrow range; every weight tensor of the file has its codes
    there): ``[ (1 - z) s, (255 - z) s ]``. Activations use 0..255: ``[ -z s, (255 - z) s ]``,
    taken from the layer's Relu6 output (the logits: their BiasAdd output).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    weights: dict[str, tuple[float, float]] = {}
    acts: dict[str, tuple[float, float]] = {}
    for t in interpreter.get_tensor_details():
        name, (scale, zero) = t["name"], t["quantization"]
        if t["dtype"] != np.uint8 or len(t["shape"]) != 4:
            continue
        head = name.split(";")[0]
        match = _WEIGHTS.search(name.split(";")[-1]) or _WEIGHTS.search(name)
        if "weights_quant" in name and match and not head.endswith(("Relu6", "BiasAdd")):
            weights[match.group(1)] = ((1 - zero) * scale, (255 - zero) * scale)
        elif head.endswith("/Relu6"):
            acts[head.split("/")[-2]] = (-zero * scale, (255 - zero) * scale)
        elif head.endswith("Logits/Conv2d_1c_1x1/BiasAdd"):
            acts["Logits/Conv2d_1c_1x1"] = (-zero * scale, (255 - zero) * scale)
    layers = dequantized_layers(tflite)
    order = ["Conv2d_0"] + [f"Conv2d_{i}_{k}" for i in range(1, 14) for k in ("depthwise", "pointwise")] \
        + ["Logits/Conv2d_1c_1x1"]
    return [QuantLayer(name, layers[name]["kernel"], layers[name]["bias"], weights[name], acts[name])
            for name in order]


def unfolded_batch_norm(scope: str, kernel: np.ndarray, bias: np.ndarray, depthwise: bool,
                        rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A slim layer's kernel and a random batch norm that fold back into a TFLite layer's (kernel, bias):
    a checkpoint to restore must carry an unfolded batch norm, as a real training checkpoint does."""
    depth = bias.shape[0]
    gamma = rng.uniform(0.5, 1.5, depth).astype(np.float32)
    mean = rng.normal(0.0, 0.2, depth).astype(np.float32)
    variance = rng.uniform(0.5, 1.5, depth).astype(np.float32)
    multiplier = gamma / np.sqrt(variance + np.float32(EPSILON))
    shaped = multiplier.reshape(1, 1, -1, 1) if depthwise else multiplier
    return {f"{scope}/{'depthwise_weights' if depthwise else 'weights'}": (kernel / shaped).astype(np.float32),
            f"{scope}/BatchNorm/gamma": gamma,
            f"{scope}/BatchNorm/beta": (bias + mean * multiplier).astype(np.float32),
            f"{scope}/BatchNorm/moving_mean": mean,
            f"{scope}/BatchNorm/moving_variance": variance}


def quant_checkpoint_arrays(tflite: Path = TFLITE, seed: int = 7, shadows: bool = False) -> dict[str, np.ndarray]:
    """The variables of a contrib.quantize v1 checkpoint holding the real file's network.

    Batch norm is *not* the identity here: random gamma / statistics, with the stored weights
    ``folded / multiplier`` and beta ``bias + mean * multiplier``, so that only a restore that
    folds before quantizing gets the folded weights back on their grid. Range names follow
    tensorflow/models#7774 (``MobilenetV1/MobilenetV1/<layer>/{act,weights}_quant/{min,max}``
    and the moving averages' ``.../act_quant/<scope>/act_quant/{min,max}/{biased,local_step}``);
    the classifier's sit under ``MobilenetV1/Logits/Conv2d_1c_1x1`` (TFLite tensor names of the
    real file: ``MobilenetV1/Logits/Conv2d_1c_1x1/weights_quant/FakeQuant...``).
    ``shadows``: also ``<var>/ExponentialMovingAverage`` for every weight and batch-norm
    variable, 5% off the plain values (the frozen graph and the .tflite carry the plain ones).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {"global_step": np.array(12345, np.float32)}
    for q in quant_layers(tflite):
        logits = q.layer.startswith("Logits")
        scope = f"MobilenetV1/{q.layer}"
        ranges = scope if logits else f"MobilenetV1/MobilenetV1/{q.layer}"
        if logits:
            out[f"{scope}/weights"], out[f"{scope}/biases"] = q.kernel, q.bias
        else:
            out.update(unfolded_batch_norm(scope, q.kernel, q.bias, q.layer.endswith("depthwise"), rng))
        for kind, (low, high) in (("weights_quant", q.weights_range), ("act_quant", q.act_range)):
            out[f"{ranges}/{kind}/min"] = np.float32(low)
            out[f"{ranges}/{kind}/max"] = np.float32(high)
        for end in ("min", "max"):
            slot = f"{ranges}/act_quant/{ranges}/act_quant/{end}"
            out[f"{slot}/biased"] = np.float32(q.act_range[0 if end == "min" else 1])
            out[f"{slot}/local_step"] = np.float32(12345)
    out["fake_quantization_step"] = np.array(12345, np.float32)
    if shadows:
        for name in [n for n in out if n.endswith(("weights", "biases")) or "/BatchNorm/" in n]:
            if "_quant/" not in name:
                value = out[name]
                out[name + "/ExponentialMovingAverage"] = (
                    value * (1 + 0.05 * rng.standard_normal(value.shape))).astype(np.float32)
    return out


_STRIDED = {"Conv2d_0", "Conv2d_2_depthwise", "Conv2d_4_depthwise", "Conv2d_6_depthwise", "Conv2d_12_depthwise"}


def fake_quant_forward(tf, images, tflite: Path = TFLITE):
    """Slim's v1 forward pass with contrib.quantize's fake-quant points, plain TF ops only.

    Folded weights and ranges come straight from the TFLite file (``quant_layers``), nothing
    from ``zoo``: SAME padding (slim's), weights fake-quantized narrow range, every ReLU6
    output and the logits (after BiasAdd) with their ranges, AvgPool and Softmax unquantized.
    Works eagerly and inside a TF1 graph.
    """
    x = images
    for q in quant_layers(tflite):
        logits = q.layer.startswith("Logits")
        if logits:
            x = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
        w = tf.quantization.fake_quant_with_min_max_vars(tf.constant(q.kernel), *q.weights_range, narrow_range=True)
        stride = (1, 2, 2, 1) if q.layer in _STRIDED else (1, 1, 1, 1)
        conv = tf.nn.depthwise_conv2d if q.layer.endswith("depthwise") else tf.nn.conv2d
        x = conv(x, w, stride, "SAME") + q.bias
        if not logits:
            x = tf.nn.relu6(x)
        x = tf.quantization.fake_quant_with_min_max_vars(x, *q.act_range, narrow_range=False)
    return tf.nn.softmax(tf.reshape(x, (-1, int(x.shape[-1]))))


def write_quant_frozen_graph(path: Path, tflite: Path = TFLITE) -> Path:
    """A frozen fake-quant GraphDef like the tarball's ``_frozen.pb``: node names ``input`` and
    ``MobilenetV1/Predictions/Reshape_1`` (the catalog's), FakeQuantWithMinMaxVars ops inside."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, (None, 128, 128, 3), name="input")
        tf.identity(fake_quant_forward(tf, images, tflite), name="MobilenetV1/Predictions/Reshape_1")
    Path(path).write_bytes(graph.as_graph_def().SerializeToString())
    return Path(path)


def write_quant_checkpoint(directory: Path, tflite: Path = TFLITE,
                           arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``<directory>/mobilenet_v1_0.25_128_quant.ckpt.*`` with the real .tflite and a frozen
    fake-quant graph beside it, as the tarball holds them."""
    import shutil

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(tflite, directory / f"{QUANT_STEM}.tflite")
    write_quant_frozen_graph(directory / f"{QUANT_STEM}_frozen.pb", tflite)
    return save_arrays(directory / f"{QUANT_STEM}.ckpt",
                       quant_checkpoint_arrays(tflite) if arrays is None else arrays)
