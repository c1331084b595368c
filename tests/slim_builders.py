"""Write tiny, upstream-shaped MobileNet model directories for tests.

Each ``write_*_model`` builds slim's forward pass as a TF1 graph (``tf.compat.v1``
variables with slim's exact names, SAME padding, fused batch norm with epsilon 1e-3,
relu6 / hard-swish / squeeze-excite as upstream defines them), fills it with random but
fixed weights, and writes what an unpacked upstream tarball holds:

* v1/v2: ``<stem>.ckpt.{index,data-00000-of-00001,meta}``, ``<stem>_frozen.pb``,
  ``<stem>.tflite``, ``<stem>_info.txt``; the checkpoint also carries the training extras
  of a real one (``global_step``, ``<var>/RMSProp``, ``<var>/RMSProp_1`` and
  ``<var>/ExponentialMovingAverage`` shadows whose values differ from the raw ones);
* v3: ``<stem>/ema/model-<step>.*`` (+ ``ema/checkpoint``), ``<stem>/pristine/model-<step>.*``,
  ``<stem>/<stem>.pb`` and ``<stem>/<stem>.tflite``;
* EdgeTPU: ``<stem>/model.ckpt-<step>.*`` (+ ``checkpoint``) with the extras, ``.pb``, ``.tflite``.

The frozen graph and the .tflite carry the weights upstream evaluates with (v1 raw,
v2/v3/EdgeTPU moving averages), so ``BuiltModel.probabilities`` is what every format should reproduce.
Nothing here imports ``zoo.formats``: the graph is the independent reference.
Upstream facts (names, layer lists, rounding) come from tensorflow/models
``research/slim/nets/mobilenet_v1.py`` and ``research/slim/nets/mobilenet/*.py``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from zoo.catalog.registry import Entry, default_catalog_path, load_catalog

GATE = 0.16667  # mobilenet_v3.py's squeeze-excite gate: relu6(x + 3) * 0.16667, not / 6
BATCH = 2  # reference images per model: a batch > 1 catches batch-mixing bugs
EMA_SUFFIX = "/ExponentialMovingAverage"


@dataclass(frozen=True)
class BuiltModel:
    """What a builder wrote and what the source graph computed on ``images``."""

    entry: Entry                 # tiny catalog entry whose ``files`` match the directory
    directory: Path              # the unpacked-tarball directory
    checkpoint: Path             # prefix of the default checkpoint (v3: ema/model-<step>)
    frozen_graph: Path
    tflite: Path
    images: np.ndarray           # float32 [BATCH, H, W, 3] in [-1, 1], fixed seed
    probabilities: np.ndarray    # from the frozen graph's weights (upstream's default set)
    raw_probabilities: np.ndarray
    ema_probabilities: np.ndarray
    param_count: int             # elements in the model variables (BN statistics included)
    model_variables: tuple[str, ...]
    trainable_variables: tuple[str, ...]  # the ones with moving averages in an EMA restore
    # with the shadows of every variable, batch-norm statistics included (v1/v2/EdgeTPU only)
    ema_all_probabilities: np.ndarray | None = None
    frozen_set: str = ""         # the weight set the frozen graph and .tflite carry


# ----------------------------------------------------------------------------- entries
_BASE_IDS = {"v1": "v1_1.0_224", "v2": "v2_1.0_224", "v3": "v3_large_1.0_224",
             "edgetpu": "edgetpu_1.0_224_quant"}


def stem_for(family: str, width: float, resolution: int, variant: str | None = None,
             quantized: bool = False) -> str:
    """Upstream's file stem, e.g. ``mobilenet_v1_0.25_32`` or ``v3-large_32_0.75_float``."""
    if family == "v3":
        return f"v3-{variant.replace('_', '-')}_{resolution}_{width}_float"
    if family == "edgetpu":
        return f"mobilenet_edgetpu_{resolution}_{width}"
    return f"mobilenet_{family}_{width}_{resolution}" + ("_quant" if quantized else "")


def tiny_entry(family: str, width: float, resolution: int, variant: str | None = None,
               quantized: bool = False) -> Entry:
    """A catalog entry for a tiny model (copied from a real one, sizes and files replaced)."""
    # the packaged catalog, whatever MOBILENET_ZOO_CATALOG says (CLI tests may leave it set)
    base = load_catalog(default_catalog_path(), with_profile=False).get(_BASE_IDS[family])
    stem = stem_for(family, width, resolution, variant, quantized)
    if family == "v3":
        files = {"checkpoint": f"{stem}/ema/model-*", "frozen_graph": f"{stem}/*.pb",
                 "tflite": f"{stem}/*.tflite"}
    elif family == "edgetpu":
        files = {"checkpoint": f"{stem}/model.ckpt-*", "frozen_graph": f"{stem}/*.pb",
                 "tflite": f"{stem}/*.tflite"}
    else:
        files = {"checkpoint": f"{stem}.ckpt", "frozen_graph": f"{stem}_frozen.pb",
                 "tflite": f"{stem}.tflite", "info": f"{stem}_info.txt"}
    tag = f"_{variant}" if variant else ""
    return dataclasses.replace(
        base, id=f"tiny_{family}{tag}_{width}_{resolution}" + ("_quant" if quantized else ""),
        variant=variant, width=float(width), resolution=resolution, quantized=quantized,
        input_size=(resolution, resolution, 3), files=files, aliases=(),
        releases=(dataclasses.replace(base.default_release, sha256=None, size_bytes=None),))


# ----------------------------------------------------------------------------- slim ops
def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """slim's channel rounding (mobilenet.py ``_make_divisible``)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class _SlimGraph:
    """Creates slim-named variables with random values and the ops of slim's layers."""

    def __init__(self, tf: Any, scope: str, seed: int):
        self.tf, self.scope = tf, scope
        self.rng = np.random.default_rng(seed)
        self.variables: dict[str, Any] = {}     # checkpoint name -> tf variable
        self.raw: dict[str, np.ndarray] = {}
        self.trainable: list[str] = []
        self.batch_norm_inputs: list[tuple[Any, str]] = []  # (tensor before BN, BN scope)
        self.calibration_batch: np.ndarray | None = None
        self.logits_tensor: Any = None

    def variable(self, name: str, value: np.ndarray, trainable: bool = True) -> Any:
        full = f"{self.scope}/{name}"
        value = np.asarray(value, np.float32)
        # zeros in the graph, values loaded later: keeps the .meta file small
        self.variables[full] = self.tf.compat.v1.get_variable(
            full, shape=value.shape, initializer=self.tf.compat.v1.zeros_initializer())
        self.raw[full] = value
        if trainable:
            self.trainable.append(full)
        return self.variables[full]

    def _he(self, shape: tuple, fan_in: int) -> np.ndarray:
        return self.rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)

    def batch_norm(self, net: Any, scope: str) -> Any:
        depth = int(net.shape[-1])
        gamma = self.variable(f"{scope}/gamma", self.rng.uniform(0.7, 1.3, depth))
        beta = self.variable(f"{scope}/beta", self.rng.normal(0.0, 0.2, depth))
        mean = self.variable(f"{scope}/moving_mean", self.rng.normal(0.0, 0.2, depth), trainable=False)
        var = self.variable(f"{scope}/moving_variance", self.rng.uniform(0.5, 1.5, depth),
                            trainable=False)
        self.batch_norm_inputs.append((net, f"{self.scope}/{scope}"))
        out, _, _ = self.tf.compat.v1.nn.fused_batch_norm(net, gamma, beta, mean, var, epsilon=1e-3,
                                                          is_training=False)
        return out

    def calibrate(self, session: Any, images: Any, batch: np.ndarray,
                  values: dict[str, np.ndarray] | None = None) -> None:
        """Set each BN's moving statistics near the real ones of its input, layer by layer.

        Random weights with random statistics make activations explode or vanish over 50
        layers; calibrated ones keep every layer (and the logits) in a useful range, so
        the outputs are far from uniform and far from one-hot. The statistics stay
        non-trivial: means and variances are off by a random 20%. ``values`` (default: the
        raw set) must be loaded in the session; it receives the new statistics.
        """
        values = self.raw if values is None else values
        for tensor, scope in self.batch_norm_inputs:
            seen = session.run(tensor, {images: batch})
            # the second moment, not the variance: deep features of noise images hardly
            # vary between images, and dividing by that tiny spread would blow up rounding
            mean, var = seen.mean(axis=(0, 1, 2)), np.square(seen).mean(axis=(0, 1, 2)) + 1e-3
            values[f"{scope}/moving_mean"] = (
                mean + 0.2 * np.sqrt(var) * self.rng.normal(0, 1, mean.shape)).astype(np.float32)
            values[f"{scope}/moving_variance"] = (var * self.rng.uniform(0.8, 1.2, var.shape)
                                                  ).astype(np.float32)
            assign(session, {self.variables[f"{scope}/{n}"]: values[f"{scope}/{n}"]
                             for n in ("moving_mean", "moving_variance")})
        # finally scale the classifier so the logits spread by about 3: softmax neither
        # flat nor one-hot, so a wrong weight shows in the probabilities
        spread = float(np.std(session.run(self.logits_tensor, {images: batch})))
        for name in ("weights", "biases"):
            full = f"{self.scope}/Logits/Conv2d_1c_1x1/{name}"
            values[full] = (values[full] * (3.0 / spread)).astype(np.float32)
            assign(session, {self.variables[full]: values[full]})

    def conv(self, net: Any, scope: str, depth: int, kernel: int = 1, stride: int = 1,
             activation: Callable | None = None, batch_norm: bool = True, biases: bool = False,
             weight_scale: float = 1.0) -> Any:
        tf, depth_in = self.tf, int(net.shape[-1])
        shape = (kernel, kernel, depth_in, depth)
        weights = self.variable(f"{scope}/weights", weight_scale * self._he(shape, kernel * kernel * depth_in))
        net = tf.nn.conv2d(net, weights, [1, stride, stride, 1], "SAME")
        if biases:
            net = tf.nn.bias_add(net, self.variable(f"{scope}/biases", self.rng.normal(0.0, 0.1, depth)))
        if batch_norm:
            net = self.batch_norm(net, f"{scope}/BatchNorm")
        return activation(net) if activation else net

    def depthwise(self, net: Any, scope: str, kernel: int, stride: int, activation: Callable) -> Any:
        tf, depth_in = self.tf, int(net.shape[-1])
        weights = self.variable(f"{scope}/depthwise_weights",
                                self._he((kernel, kernel, depth_in, 1), kernel * kernel))
        net = tf.nn.depthwise_conv2d(net, weights, [1, stride, stride, 1], "SAME")
        return activation(self.batch_norm(net, f"{scope}/BatchNorm"))

    def global_pool(self, net: Any) -> Any:
        """slim pools with a kernel the size of the feature map, VALID."""
        h, w = int(net.shape[1]), int(net.shape[2])
        return self.tf.nn.avg_pool2d(net, [1, h, w, 1], [1, 1, 1, 1], "VALID")

    def logits(self, net: Any, num_classes: int) -> Any:
        net = self.conv(net, "Logits/Conv2d_1c_1x1", num_classes, biases=True, batch_norm=False)
        self.logits_tensor = self.tf.squeeze(net, [1, 2], name=f"{self.scope}/Logits/SpatialSqueeze")
        return self.logits_tensor


# ----------------------------------------------------------------------------- the nets
_V1_LAYERS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512),
              (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024)]  # (stride, depth) of Conv2d_1..13


def _v1_forward(g: _SlimGraph, images: Any, width: float) -> Any:
    tf = g.tf
    depth = lambda d: max(int(d * width), 8)  # noqa: E731 - mobilenet_v1.py's depth()
    net = g.conv(images, "Conv2d_0", depth(32), kernel=3, stride=2, activation=tf.nn.relu6)
    for i, (stride, d) in enumerate(_V1_LAYERS, start=1):
        net = g.depthwise(net, f"Conv2d_{i}_depthwise", 3, stride, tf.nn.relu6)
        net = g.conv(net, f"Conv2d_{i}_pointwise", depth(d), activation=tf.nn.relu6)
    return g.logits(g.global_pool(net), 1001)


# (expansion, depth, stride) of expanded_conv, expanded_conv_1 ... _16 (mobilenet_v2.V2_DEF)
_V2_BLOCKS = [(1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2),
              (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2),
              (6, 160, 1), (6, 160, 1), (6, 320, 1)]


def _v2_forward(g: _SlimGraph, images: Any, width: float) -> Any:
    tf = g.tf
    depth = lambda d: make_divisible(d * width, 8, 8)  # noqa: E731 - mobilenet.depth_multiplier
    net = g.conv(images, "Conv", depth(32), kernel=3, stride=2, activation=tf.nn.relu6)
    for i, (expansion, d, stride) in enumerate(_V2_BLOCKS):
        net = _expanded_conv(g, net, "expanded_conv" + (f"_{i}" if i else ""), expansion, depth(d),
                             3, stride, tf.nn.relu6, squeeze_excite=False,
                             divisible_by=1 if i == 0 else 8)
    # finegrain_classification_mode, as the published v2 < 1.0 use: 1280 is never scaled down
    last = 1280 if width <= 1.0 else depth(1280)
    net = g.conv(net, "Conv_1", last, activation=tf.nn.relu6)
    return g.logits(g.global_pool(net), 1001)


def _hard_swish(tf: Any) -> Callable:
    return lambda x: x * tf.nn.relu6(x + np.float32(3)) * np.float32(1.0 / 6.0)


def _v3_spec(variant: str) -> tuple[list[tuple], int, int]:
    """Blocks (expansion, depth, kernel, stride, hard_swish?, squeeze_excite?), last conv, head."""
    relu, hs = False, True
    if variant.startswith("large"):
        blocks = [(1, 16, 3, 1, relu, False), (4, 24, 3, 2, relu, False), (3, 24, 3, 1, relu, False),
                  (3, 40, 5, 2, relu, True), (3, 40, 5, 1, relu, True), (3, 40, 5, 1, relu, True),
                  (6, 80, 3, 2, hs, False), (2.5, 80, 3, 1, hs, False), (184 / 80., 80, 3, 1, hs, False),
                  (184 / 80., 80, 3, 1, hs, False), (6, 112, 3, 1, hs, True), (6, 112, 3, 1, hs, True),
                  (6, 160, 5, 2, hs, True), (6, 160, 5, 1, hs, True), (6, 160, 5, 1, hs, True)]
        last, head = 960, 1280
    else:
        blocks = [(1, 16, 3, 2, relu, True), (72 / 16., 24, 3, 2, relu, False),
                  (88 / 24., 24, 3, 1, relu, False), (4, 40, 5, 2, hs, True), (6, 40, 5, 1, hs, True),
                  (6, 40, 5, 1, hs, True), (3, 48, 5, 1, hs, True), (3, 48, 5, 1, hs, True),
                  (6, 96, 5, 2, hs, True), (6, 96, 5, 1, hs, True), (6, 96, 5, 1, hs, True)]
        last, head = 576, 1024
    if variant.endswith("minimalistic"):  # no SE, no hard-swish, no 5x5 (mobilenet_v3.py)
        blocks = [(e, d, 3, s, relu, False) for e, d, _, s, _, _ in blocks]
    return blocks, last, head


def _v3_forward(g: _SlimGraph, images: Any, width: float, variant: str) -> Any:
    tf = g.tf
    minimal = variant.endswith("minimalistic")
    outer = tf.nn.relu if minimal else _hard_swish(tf)
    depth = lambda d: make_divisible(d * width, 8, 8)  # noqa: E731
    blocks, last, head = _v3_spec(variant)
    net = g.conv(images, "Conv", depth(16), kernel=3, stride=2, activation=outer)
    for i, (expansion, d, kernel, stride, hswish, se) in enumerate(blocks):
        act = _hard_swish(tf) if hswish else tf.nn.relu
        net = _expanded_conv(g, net, "expanded_conv" + (f"_{i}" if i else ""), expansion, depth(d),
                             kernel, stride, act, squeeze_excite=se)
    net = g.conv(net, "Conv_1", depth(last), activation=outer)
    net = g.global_pool(net)
    head_depth = head if width <= 1.0 else depth(head)  # published 0.75 models keep 1280/1024
    net = g.conv(net, "Conv_2", head_depth, activation=outer, batch_norm=False, biases=True)
    return g.logits(net, 1001)


# (fused, kernel, stride, expansion, depth, residual) of expanded_conv ... _22 (mobilenet_v3.V3_EDGETPU).
# Fused blocks: one k x k conv with the stride as "expand", no depthwise.
_EDGETPU_BLOCKS = [(True, 3, 1, 1, 16, True), (True, 3, 2, 8, 32, True), (True, 3, 1, 4, 32, True),
                   (True, 3, 1, 4, 32, True), (True, 3, 1, 4, 32, True), (True, 3, 2, 8, 48, True),
                   (True, 3, 1, 4, 48, True), (True, 3, 1, 4, 48, True), (True, 3, 1, 4, 48, True),
                   (False, 3, 2, 8, 96, True), (False, 3, 1, 4, 96, True), (False, 3, 1, 4, 96, True),
                   (False, 3, 1, 4, 96, True), (False, 3, 1, 8, 96, False), (False, 3, 1, 4, 96, True),
                   (False, 3, 1, 4, 96, True), (False, 3, 1, 4, 96, True), (False, 5, 2, 8, 160, True),
                   (False, 5, 1, 4, 160, True), (False, 5, 1, 4, 160, True), (False, 5, 1, 4, 160, True),
                   (False, 3, 1, 8, 192, True)]


def _edgetpu_forward(g: _SlimGraph, images: Any, width: float) -> Any:
    tf = g.tf
    depth = lambda d: make_divisible(d * width, 8, 8)  # noqa: E731
    net = g.conv(images, "Conv", depth(32), kernel=3, stride=2, activation=tf.nn.relu)
    for i, (fused, kernel, stride, expansion, d, residual) in enumerate(_EDGETPU_BLOCKS):
        scope = "expanded_conv" + (f"_{i}" if i else "")
        block_input, depth_in = net, int(net.shape[-1])
        inner = make_divisible(depth_in * expansion, 8)
        if inner > depth_in:
            net = g.conv(net, f"{scope}/expand", inner, kernel=kernel if fused else 1,
                         stride=stride if fused else 1, activation=tf.nn.relu)
        if not fused:
            net = g.depthwise(net, f"{scope}/depthwise", kernel, stride, tf.nn.relu)
        net = g.conv(net, f"{scope}/project", depth(d))
        if residual and stride == 1 and depth(d) == depth_in:
            net = net + block_input
    # edge_tpu_075 uses finegrain_classification_mode: 1280 is not scaled down
    net = g.conv(net, "Conv_1", 1280 if width <= 1.0 else depth(1280), activation=tf.nn.relu)
    return g.logits(g.global_pool(net), 1001)


def _expanded_conv(g: _SlimGraph, net: Any, scope: str, expansion: float, depth: int, kernel: int,
                   stride: int, activation: Callable, squeeze_excite: bool,
                   divisible_by: int = 8) -> Any:
    """conv_blocks.expanded_conv: expand 1x1 -> depthwise -> (SE) -> linear project (+ residual)."""
    tf = g.tf
    block_input = net
    depth_in = int(net.shape[-1])
    inner = make_divisible(depth_in * expansion, divisible_by)
    if inner > depth_in:
        net = g.conv(net, f"{scope}/expand", inner, activation=activation)
    net = g.depthwise(net, f"{scope}/depthwise", kernel, stride, activation)
    if squeeze_excite:
        squeeze = make_divisible(inner / 4, 8)
        pooled = tf.reduce_mean(net, axis=[1, 2], keepdims=True)
        hidden = g.conv(pooled, f"{scope}/squeeze_excite/Conv", squeeze, activation=tf.nn.relu,
                        batch_norm=False, biases=True)
        gate = g.conv(hidden, f"{scope}/squeeze_excite/Conv_1", inner, batch_norm=False, biases=True,
                      activation=lambda x: tf.nn.relu6(x + 3) * GATE)
        net = net * gate
    net = g.conv(net, f"{scope}/project", depth)
    if stride == 1 and depth == depth_in:
        net = net + block_input
    return net


# ----------------------------------------------------------------------------- writers
def write_v1_model(directory: Path, *, width: float = 0.25, resolution: int = 32, seed: int = 1,
                   quantized: bool = False, frozen_set: str | None = None) -> BuiltModel:
    """Tiny MobilenetV1 as upstream ships it (frozen/tflite with the raw weights, as v1 evaluates).

    ``quantized=True`` only adds fake-quant range variables (``.../act_quant/min``...) to
    the checkpoint and ``_quant`` to the names; the graph and the .tflite stay float.
    """
    entry = tiny_entry("v1", width, resolution, quantized=quantized)
    return _write_flat(Path(directory), entry, lambda g, x: _v1_forward(g, x, width), "MobilenetV1",
                       seed, default="raw", frozen_set=frozen_set)


def write_v2_model(directory: Path, *, width: float = 0.35, resolution: int = 32,
                   seed: int = 2, frozen_set: str | None = None) -> BuiltModel:
    """Tiny MobilenetV2 as upstream ships it (frozen/tflite with the moving averages)."""
    entry = tiny_entry("v2", width, resolution)
    return _write_flat(Path(directory), entry, lambda g, x: _v2_forward(g, x, width), "MobilenetV2",
                       seed, default="ema", frozen_set=frozen_set)


def write_v3_model(directory: Path, *, variant: str = "large", width: float = 0.75,
                   resolution: int = 32, seed: int = 3) -> BuiltModel:
    """Tiny MobilenetV3 tarball layout: ``<stem>/{ema,pristine}/model-<step>.*``, ``.pb``, ``.tflite``.

    Width must be >= 0.75 for Keras to agree: Keras keeps the 16-channel stem fixed,
    slim scales it (equal only for 0.75 and 1.0, the published widths).
    """
    entry = tiny_entry("v3", width, resolution, variant=variant)
    return _write_v3(Path(directory), entry, lambda g, x: _v3_forward(g, x, width, variant), seed)


def write_edgetpu_model(directory: Path, *, width: float = 0.75, resolution: int = 32,
                        seed: int = 4) -> BuiltModel:
    """Tiny MobileNet-EdgeTPU: ``<stem>/model.ckpt-<step>.*`` (+ ``checkpoint``), ``.pb``, ``.tflite``.

    A training checkpoint with extras, like v2's; frozen graph and .tflite carry the
    moving averages. Float (the published EdgeTPU models are quantized).
    """
    entry = tiny_entry("edgetpu", width, resolution)
    root = Path(directory) / entry.files["checkpoint"].split("/")[0]
    return _write_training_checkpoint(
        Path(directory), entry, lambda g, x: _edgetpu_forward(g, x, width), "MobilenetEdgeTPU", seed,
        "ema", checkpoint=root / "model.ckpt", step=4321, frozen=root / f"{root.name}.pb",
        tflite=root / f"{root.name}.tflite", output="MobilenetEdgeTPU/Predictions/Softmax")


def _session_graph(build: Callable, entry: Entry, scope: str, seed: int):
    """(graph, session, slim graph, input placeholder, probabilities tensor)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        h, w, c = entry.input_size
        images = tf.compat.v1.placeholder(tf.float32, [None, h, w, c], name="input")
        g = _SlimGraph(tf, scope, seed)
        logits = build(g, images)
        with tf.compat.v1.name_scope(f"{scope}/Predictions/"):
            if entry.family in ("v3", "edgetpu"):
                probs = tf.nn.softmax(logits, name="Softmax")
            else:  # slim.softmax: reshape to 2-D, softmax, reshape back
                flat = tf.reshape(logits, [-1, int(logits.shape[-1])], name="Reshape")
                probs = tf.reshape(tf.nn.softmax(flat, name="Softmax"), tf.shape(logits), name="Reshape_1")
        session = tf.compat.v1.Session(graph=graph)
        _load(session, g, g.raw)
        # the reference images are part of the calibration batch: tiny random nets are
        # chaotic, and statistics fitted to other images alone leave them badly scaled
        others = np.random.default_rng(seed + 200).uniform(-1, 1, (62, h, w, c)).astype(np.float32)
        g.calibration_batch = np.concatenate([_reference_images(entry, seed), others])
        g.calibrate(session, images, g.calibration_batch)
    return tf, graph, session, g, images, probs


def _ema_values(g: _SlimGraph) -> dict[str, np.ndarray]:
    """Shadow values for every model variable, each moved off the raw value by noise.

    Training writes shadows of the BN statistics too, so we do; but the moving-average
    model upstream restores uses shadows for trainable variables only and the plain
    statistics (see ``ema_model_values``).
    """
    rng = np.random.default_rng(1234)
    out = {}
    for name, value in g.raw.items():
        if name.endswith("moving_variance"):
            out[name] = (value * rng.uniform(0.8, 1.2, value.shape)).astype(np.float32)
        else:
            noise = rng.normal(0.0, 0.05 * (np.std(value) + 1e-3), value.shape)
            out[name] = (value + noise).astype(np.float32)
    return out


def ema_model_values(g: _SlimGraph, shadows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The values an EMA restore puts in the model: shadows for trainable variables only."""
    trainable = set(g.trainable)
    return {name: (shadows[name] if name in trainable else value) for name, value in g.raw.items()}


def assign(session: Any, values: dict[Any, np.ndarray]) -> None:
    """Set many variables in one run by feeding their initializers' value inputs."""
    session.run([var.initializer for var in values],
                {var.initializer.inputs[1]: value for var, value in values.items()})


def _load(session: Any, g: _SlimGraph, values: dict[str, np.ndarray]) -> None:
    assign(session, {var: values[name] for name, var in g.variables.items()})


def _reference_images(entry: Entry, seed: int) -> np.ndarray:
    h, w, c = entry.input_size
    return np.random.default_rng(seed + 100).uniform(-1, 1, (BATCH, h, w, c)).astype(np.float32)


def _freeze(tf: Any, session: Any, graph: Any, output: str, pb_path: Path, tflite_path: Path,
            images: Any, probs: Any) -> None:
    frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
        session, graph.as_graph_def(), [output])
    pb_path.write_bytes(frozen.SerializeToString())
    converter = tf.compat.v1.lite.TFLiteConverter.from_session(session, [images], [probs])
    tflite_path.write_bytes(converter.convert())


def _write_flat(directory: Path, entry: Entry, build: Callable, scope: str, seed: int,
                default: str, frozen_set: str | None = None) -> BuiltModel:
    """v1/v2 release layout: every file at the top, named after the stem."""
    stem = Path(entry.files["checkpoint"]).name[: -len(".ckpt")]
    built = _write_training_checkpoint(
        directory, entry, build, scope, seed, default, checkpoint=directory / f"{stem}.ckpt", step=None,
        frozen=directory / f"{stem}_frozen.pb", tflite=directory / f"{stem}.tflite",
        output=f"{scope}/Predictions/Reshape_1", frozen_set=frozen_set)
    (directory / f"{stem}_info.txt").write_text(
        f"Model: {stem}\nInput: {entry.input_node}\nOutput: {entry.output_node}\n")
    return built


def _write_training_checkpoint(directory: Path, entry: Entry, build: Callable, scope: str, seed: int,
                               default: str, *, checkpoint: Path, step: int | None, frozen: Path,
                               tflite: Path, output: str, frozen_set: str | None = None) -> BuiltModel:
    """One training checkpoint with extras (``step``: saved as ``<checkpoint>-<step>``).

    ``frozen_set``: the weights the frozen graph and .tflite get: ``"raw"``, ``"ema-trainable"``
    (shadows of trainable variables, plain BN statistics) or ``"ema"`` (every shadow); by
    default ``default`` ("raw" or "ema", the latter meaning ema-trainable, as the notebook restores).
    """
    frozen_set = frozen_set or ("raw" if default == "raw" else "ema-trainable")
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tf, graph, session, g, images, probs = _session_graph(build, entry, scope, seed)
    x = _reference_images(entry, seed)
    with graph.as_default():
        ema = _ema_values(g)
        save_list = dict(g.variables)
        rng = np.random.default_rng(seed + 7)
        extras: dict[str, np.ndarray] = {}
        for name in g.trainable:
            extras[name + "/RMSProp"] = rng.uniform(0, 1e-3, g.raw[name].shape)
            extras[name + "/RMSProp_1"] = rng.normal(0, 1e-3, g.raw[name].shape)
        for name in g.variables:
            extras[name + EMA_SUFFIX] = ema[name]
        if entry.quantized:
            for name in g.variables:
                if name.endswith(("/weights", "/depthwise_weights")):
                    layer = name.rsplit("/", 1)[0]
                    for q in ("act_quant", "weights_quant"):
                        extras[f"{layer}/{q}/min"] = np.float32(-6.0)
                        extras[f"{layer}/{q}/max"] = np.float32(6.0)
        for name, value in extras.items():
            save_list[name] = tf.compat.v1.Variable(tf.zeros(np.shape(value)), name="extra")
        assign(session, {save_list[name]: value for name, value in extras.items()})
        save_list["global_step"] = tf.compat.v1.Variable(np.int64(step or 123456), name="global_step")
        session.run(save_list["global_step"].initializer)
        prefix = tf.compat.v1.train.Saver(save_list).save(session, str(checkpoint), global_step=step,
                                                          write_state=step is not None)
        raw_probs = session.run(probs, {images: x})
        _load(session, g, ema)
        ema_all_probs = session.run(probs, {images: x})
        _load(session, g, ema_model_values(g, ema))
        ema_probs = session.run(probs, {images: x})
        frozen_values = {"raw": g.raw, "ema": ema, "ema-trainable": ema_model_values(g, ema)}[frozen_set]
        _load(session, g, frozen_values)
        _freeze(tf, session, graph, output, frozen, tflite, images, probs)
    session.close()
    entry = dataclasses.replace(entry, params_m=round(_count(g) / 1e6, 6))
    chosen = {"raw": raw_probs, "ema": ema_all_probs, "ema-trainable": ema_probs}[frozen_set]
    return BuiltModel(entry, directory, Path(prefix), frozen, tflite, x, chosen, raw_probs, ema_probs,
                      _count(g), tuple(g.variables), tuple(g.trainable), ema_all_probs, frozen_set)


def _write_v3(directory: Path, entry: Entry, build: Callable, seed: int) -> BuiltModel:
    stem = entry.files["checkpoint"].split("/")[0]
    root = directory / stem
    (root / "ema").mkdir(parents=True, exist_ok=True)
    (root / "pristine").mkdir(parents=True, exist_ok=True)
    step = 4321
    tf, graph, session, g, images, probs = _session_graph(build, entry, "MobilenetV3", seed)
    x = _reference_images(entry, seed)
    with graph.as_default():
        ema = _ema_values(g)
        save_list = dict(g.variables)
        save_list["global_step"] = tf.compat.v1.Variable(np.int64(step), name="global_step")
        session.run(save_list["global_step"].initializer)
        saver = tf.compat.v1.train.Saver(save_list)
        saver.save(session, str(root / "pristine" / "model"), global_step=step)
        raw_probs = session.run(probs, {images: x})
        _load(session, g, ema_model_values(g, ema))
        saver.save(session, str(root / "ema" / "model"), global_step=step)
        ema_probs = session.run(probs, {images: x})
        _freeze(tf, session, graph, "MobilenetV3/Predictions/Softmax", root / f"{stem}.pb",
                root / f"{stem}.tflite", images, probs)
    session.close()
    entry = dataclasses.replace(entry, params_m=round(_count(g) / 1e6, 6))
    return BuiltModel(entry, directory, root / "ema" / f"model-{step}", root / f"{stem}.pb",
                      root / f"{stem}.tflite", x, ema_probs, raw_probs, ema_probs, _count(g),
                      tuple(g.variables), tuple(g.trainable))


def _count(g: _SlimGraph) -> int:
    return int(sum(v.size for v in g.raw.values()))


def rewrite_checkpoint(source: Path, target: Path,
                       edit: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> Path:
    """Copy checkpoint ``source`` to prefix ``target`` through ``edit(name -> array)``.

    For tests of broken checkpoints: rename, reshape, drop or add variables.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(source))
    tensors = edit({name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()})
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.Variable(tf.zeros(np.shape(value), tf.as_dtype(np.asarray(value).dtype)),
                                                 name="v") for name, value in tensors.items()}
        with tf.compat.v1.Session(graph=graph) as session:
            assign(session, {variables[name]: value for name, value in tensors.items()})
            tf.compat.v1.train.Saver(variables).save(session, str(target), write_meta_graph=False,
                                                     write_state=False)
    return Path(target)
