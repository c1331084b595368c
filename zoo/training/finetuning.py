"""Fine-tune a published MobileNet to your own classes: `mobilenet-zoo finetune` / ``zoo.finetune``.

    result = zoo.finetune("v1_0.25_128", data="photos/", out="my_model", epochs=5, quantize="int8")
    print(result.to_json())            # val_top1, tflite_top1, int8_top1 in percent

The model is the checkpoint restored by ``zoo.formats.ckpt`` (the weights the catalog's
accuracy was measured with) cut before its 1001-class classifier, plus a new head
(dropout + dense softmax over the folder's classes). Training follows the Keras
transfer-learning guide:

* head-only (default): the frozen backbone runs *once* per image to extract features
  (twice with the one augmented view), kept in a memory-mapped file, and the head
  trains for every epoch on those; the backbone is never recomputed per epoch;
* ``train_backbone=True``: after the head-only epochs, the backbone is unfrozen and the
  whole model trains for ``epochs`` more at a 10x lower learning rate, on augmented images. The
  batch-norm layers stay frozen (``trainable=False``, which in Keras 3 also means
  inference mode), so they keep using, and never update, their moving statistics:
  updating them from small batches of new data wrecks what the pretrained network learned;
* ``quantize='int8'``: the head also learns from the features of the backbone as the int8
  file will run it (``zoo.training.quantized_features``), in the head phase and, after backbone
  training, in a last "int8 head" phase; the best epoch is the best mean of float and int8
  validation top-1, so one set of weights serves the float and the int8 file.

Best model: after every epoch the validation top-1 is checked and the best weights are
kept; they are what is exported. Ctrl-C stops training cleanly and exports the best
model so far (``finetune.json`` says ``"interrupted": true``); before the first epoch
ends there is nothing to keep, and nothing is written.

Output goes to a hidden staging directory next to OUT and is renamed into place at
the end (``finetune.json`` is written last), so an OUT that exists is always complete.
Distribution (``strategy``): see ``zoo.training.distribute``; only the chief writes OUT.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..catalog.registry import Catalog, Entry
from ..errors import RestoreError, UsageError, ZooError
from .inputs import ImageFolder, image_dataset, scan_image_folder, split

HEAD_LEARNING_RATE = 1e-3
BACKBONE_LR_FACTOR = 0.1
HEAD_DROPOUT = 0.2
DEFAULT_VAL_SPLIT = 0.2
AUGMENTED_VIEWS = 1  # extra augmented copies of each training image in head-only feature extraction
# The layer holding slim's Logits/Conv2d_1c_1x1 in each family's Keras model (zoo.formats.slim_names).
CLASSIFIER_LAYER = {"v1": "conv_preds", "v2": "predictions", "v3": "logits", "edgetpu": "logits"}
BACKBONE_NAME = "backbone"
HEAD_NAME = "head"
JSON_KEYS = ("out", "classes", "train_images", "val_images", "val_top1", "tflite", "tflite_top1")
INT8_JSON_KEYS = ("int8_tflite", "int8_top1")


class TrainingInterrupted(ZooError):
    """Ctrl-C before any epoch finished: there is no model to keep."""

    exit_code = 130


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced; accuracies in percent, like the catalog."""

    out: str | None                 # None on a multi-worker run's non-chief workers
    classes: list[str]
    train_images: int
    val_images: int
    val_top1: float | None
    tflite: str | None
    tflite_top1: float | None
    int8_tflite: str | None = None
    int8_top1: float | None = None
    seconds: float = 0.0
    quantize: str | None = None
    interrupted: bool = False
    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: exactly the documented keys (``int8_*`` only with quantize)."""
        keys = JSON_KEYS + (INT8_JSON_KEYS if self.quantize else ()) + ("seconds",)
        return {key: getattr(self, key) for key in keys}


# ----------------------------------------------------------------------------- the base model
@dataclass
class _Base:
    entry: Entry                    # the model's catalog entry (derived entry for a fine-tuned one)
    base_entry: Entry               # the published model it all started from
    path: Path                      # slim checkpoint prefix or model.keras
    kind: str                       # "slim" or "keras"


def _resolve_base(model: str | Path | Entry, checkpoint: Path | None, catalog: Catalog | None,
                  cache_dir: Path | None) -> _Base:
    """Find the trainable weights for ``model`` without loading them (fetching if needed).

    ``checkpoint``: a local slim checkpoint that ``model`` (a catalog name) names the architecture of.
    """
    from ..formats.resolve import locate_weights

    if checkpoint is not None:
        ref = locate_weights(checkpoint, catalog=catalog, entry=model)
    else:
        ref = locate_weights(model, catalog=catalog)
    entry = ref.entry
    if entry.quantized:
        float_id = entry.id.removesuffix("_quant")
        known = float_id in (catalog if catalog is not None else ref.catalog or ())
        raise UsageError(
            f"{entry.id} is a quantized model: its checkpoint was trained with fake-quantization and its "
            ".tflite is integer-only; neither can be fine-tuned as a float model here",
            hint=(f"fine-tune the float model {float_id} with quantize='int8' for an integer TFLite"
                  if known else "fine-tune a float model with quantize='int8'"), params=("model",))
    try:
        path = ref.file(cache_dir)
    except RestoreError as exc:
        raise RestoreError(f"{entry.id}: the tarball holds no trainable checkpoint ({exc.message})",
                           hint="fine-tune a float model whose tarball ships a .ckpt") from None
    return _Base(entry, ref.base_entry or entry, path, "keras" if ref.kind == "finetuned" else "slim")


def _backbone_and_head(base: _Base, classes: Sequence[str]) -> tuple[Any, Any, Any]:
    """(backbone: image -> feature vector, new head, full model). Call inside the strategy scope."""
    from ..formats.keras_models import import_keras

    keras = import_keras()
    if base.kind == "keras":
        from ..formats.finetuned import load_keras_file

        backbone = load_keras_file(base.entry, base.path).keras_model.get_layer(BACKBONE_NAME)
    else:
        from ..formats.ckpt import restore_checkpoint

        restored = restore_checkpoint(base.entry, base.path).keras_model
        backbone = _cut_before_classifier(keras, restored, base.entry)
    backbone.trainable = False
    features = int(backbone.output.shape[-1])
    head = keras.Sequential([keras.Input((features,)), keras.layers.Dropout(HEAD_DROPOUT),
                             keras.layers.Dense(len(classes), activation="softmax", name="classes")],
                            name=HEAD_NAME)
    inputs = keras.Input(tuple(base.entry.input_size), name="images")
    # training=False: batch norm stays in inference mode even when the backbone is unfrozen
    outputs = head(backbone(inputs, training=False))
    return backbone, head, keras.Model(inputs, outputs, name="finetuned_" + _safe(base.base_entry.id))


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def _cut_before_classifier(keras: Any, model: Any, entry: Entry) -> Any:
    """The pooled feature vector that feeds slim's classifier (dropout layers skipped)."""
    layer = model.get_layer(CLASSIFIER_LAYER[entry.family])
    node = layer.input
    while True:
        producer = node._keras_history.operation
        if type(producer).__name__ != "Dropout":
            break
        node = producer.input
    flat = keras.layers.Flatten(name="features")(node)
    return keras.Model(model.input, flat, name=BACKBONE_NAME)


def _unfreeze_except_batch_norm(keras: Any, backbone: Any) -> None:
    """Train every backbone weight but batch norm's, which stays in inference mode.

    Keras 3 passes the outer ``training`` flag down through nested models, so calling the
    backbone with ``training=False`` no longer pins batch norm; a BatchNormalization layer
    with ``trainable=False`` does run in inference mode (its statistics frozen), which is
    what the transfer-learning guide asks for.
    """
    backbone.trainable = True
    for layer in backbone._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


# ----------------------------------------------------------------------------- training
def _train(tf: Any, keras: Any, dist: Any, model: Any, train_ds: Any, val_ds: Any, *, phase: str, epochs: int,
           steps: int, val_steps: int | None, learning_rate: float, batch: int, show: bool, state: dict) -> None:
    """Train ``model`` for ``epochs`` x ``steps`` batches with ``dist``; keep the best weights in ``state``.

    A plain ``strategy.run`` loop rather than ``Model.fit``: Keras 3's ``fit`` cannot start
    under ``MultiWorkerMirroredStrategy`` (its first-batch build reduces a tuple of
    per-replica values, which the collective reducer rejects). One loop serves every
    strategy, so what the tests run on one device is what runs on a cluster.
    ``val_steps`` None: run the validation set once to its end (one replica only).
    """
    from tqdm.auto import tqdm

    variables = model.trainable_variables
    with dist.scope():
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build(variables)  # slots now, not lazily inside a replica's tf.function (mirrored fails)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)

    def sums(y, probs):
        per_example = loss_fn(y, probs)
        hits = tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), tf.cast(y, tf.int32)), tf.float32)
        return per_example, tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(hits),
                                      tf.cast(tf.shape(y)[0], tf.float32)])

    def train_replica(x, y):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_example, totals = sums(y, probs)
            loss = tf.nn.compute_average_loss(per_example)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return totals

    def eval_replica(x, y):
        return sums(y, model(x, training=False))[1]

    @tf.function
    def train_step(iterator):
        return dist.reduce("SUM", dist.run(train_replica, args=next(iterator)), axis=None)

    @tf.function
    def eval_step(batch):
        return dist.reduce("SUM", dist.run(eval_replica, args=batch), axis=None)

    train_iter = iter(dist.experimental_distribute_dataset(train_ds))
    for epoch in range(epochs):
        start = time.perf_counter()
        bar = tqdm(total=steps, desc=f"{phase} {epoch + 1}/{epochs}", file=sys.stderr, leave=False, unit="step",
                   disable=not (show and sys.stderr.isatty()))
        totals = np.zeros(3)
        for step in range(steps):
            totals += train_step(train_iter).numpy()
            bar.update(1)
            if step % 5 == 0:
                bar.set_postfix(loss=f"{totals[0] / max(totals[2], 1):.3f}", acc=f"{totals[1] / max(totals[2], 1):.3f}")
        bar.close()
        val = np.zeros(3)
        val_iter = iter(dist.experimental_distribute_dataset(val_ds))
        for _ in (range(val_steps) if val_steps is not None else iter(int, 1)):
            batch = next(val_iter, None)
            if batch is None:
                break
            val += eval_step(batch).numpy()
        seconds = time.perf_counter() - start
        record = {"phase": phase, "epoch": epoch + 1, "loss": float(totals[0] / max(totals[2], 1)),
                  "accuracy": float(totals[1] / max(totals[2], 1)),
                  "val_accuracy": float(val[1] / val[2]) if val[2] else None,
                  "val_loss": float(val[0] / val[2]) if val[2] else None, "seconds": round(seconds, 3),
                  "images_per_s": round(totals[2] / max(seconds, 1e-9), 1)}
        state["history"].append(record)
        score = record["val_accuracy"] if record["val_accuracy"] is not None else -record["loss"]
        if state["best_score"] is None or score > state["best_score"]:
            state["best_score"] = score
            state["best_weights"] = state["model"].get_weights()
            state["best_epoch"] = len(state["history"])
        if show:
            text = (f"{phase} epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}, "
                    f"accuracy {100 * record['accuracy']:.1f}%")
            if record["val_accuracy"] is not None:
                text += f", val accuracy {100 * record['val_accuracy']:.1f}%"
            text += f" ({seconds:.1f} s, {record['images_per_s']:.0f} images/s)"
            print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- features
def _extract_features(tf: Any, backbone: Any, folder: ImageFolder, size: Sequence[int], batch: int,
                      views: int, directory: Path, name: str, seed: int,
                      int8: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Backbone outputs for every image (plus ``views`` augmented copies), in a memory-mapped file.

    With ``int8`` (the backbone as the int8 file runs it, ``zoo.training.quantized_features``), the
    same images also go through it and its features fill the second half of the rows, with
    the same labels: the head then learns from what both the float and the int8 file see.
    """
    dim = int(backbone.output.shape[-1])
    n = len(folder) * (1 + views)
    copies = 2 if int8 is not None else 1
    feats = np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=np.float32,
                                      shape=(n * copies, dim))
    labels = np.empty(n * copies, np.int32)
    run = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    row = 0
    for view in range(1 + views):
        for images, ys in image_dataset(folder, size, batch=batch, augment=view > 0, seed=seed + view):
            out = run(images).numpy()
            feats[row:row + len(out)] = out
            labels[row:row + len(out)] = ys.numpy()
            if int8 is not None:
                feats[n + row:n + row + len(out)] = int8(images.numpy())
                labels[n + row:n + row + len(out)] = ys.numpy()
            row += len(out)
    feats.flush()
    return feats, labels


def _feature_dataset(tf: Any, feats: np.ndarray, labels: np.ndarray, batch: int, shuffle: bool, seed: int,
                     repeat: bool = True) -> Any:
    """Batches of cached features, re-shuffled every pass, read from the memory map per batch."""
    n, dim = feats.shape

    def take(index):
        index = np.sort(index)
        return np.asarray(feats[index]), labels[index]

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = (ds.repeat() if repeat else ds).batch(batch)

    def load(index):
        x, y = tf.numpy_function(take, [index], [tf.float32, tf.int32])
        x.set_shape([None, dim])
        y.set_shape([None])
        return x, y

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.map(load).prefetch(tf.data.AUTOTUNE).with_options(options)


def _steps(n: int, batch: int) -> int:
    return max(1, -(-n // batch))


# ----------------------------------------------------------------------------- the run
def finetune(model: str | Path | Entry, data: str | Path, out: str | Path, *, epochs: int = 5,
             batch_size: int = 32, learning_rate: float | None = None, train_backbone: bool = False,
             val_data: str | Path | None = None, val_split: float | None = None, quantize: str | None = None,
             strategy: str = "auto", overwrite: bool = False, checkpoint: str | Path | None = None,
             catalog: Catalog | None = None, cache_dir: Path | None = None, seed: int = 0,
             progress: bool = True, command: Sequence[str] | None = None,
             calibration_size: int = 200) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` (``DIR/<class>/*.jpg``) and write OUT (see the module docstring).

    ``model``: catalog id or Entry (its slim checkpoint, fetched if needed; or ``checkpoint``,
    a local slim checkpoint prefix for that entry), or a directory written by ``finetune``.
    ``learning_rate``: of the head (default 1e-3, Adam); the backbone phase uses a tenth.
    ``val_split``: fraction of each class held out when no ``val_data`` (default 0.2).
    ``quantize='int8'``: also write the full-integer ``model_int8.tflite``.
    ``command``: recorded in finetune.json (the CLI passes its argv).
    """
    start = time.perf_counter()
    from .distribute import local_gpu_count, make_strategy, plan_strategy
    from .export import check_target

    if epochs < 1 or batch_size < 1:
        raise UsageError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}",
                         params=("epochs", "batch_size"))
    if learning_rate is not None and not learning_rate > 0:
        raise UsageError(f"learning_rate must be positive, got {learning_rate}", params=("learning_rate",))
    if quantize not in (None, "int8"):
        raise UsageError(f"unknown quantize={quantize!r}", hint="use quantize='int8'", params=("quantize",))
    if val_data is not None and val_split is not None:
        raise UsageError("val_data and val_split exclude each other",
                         hint="a validation folder, or a fraction of data held out, not both",
                         params=("val_data", "val_split", "data"))
    plan = plan_strategy(strategy, os.environ.get("TF_CONFIG"))  # checks TF_CONFIG; no TensorFlow yet
    out = Path(out)
    if plan.is_chief:
        check_target(out, overwrite)

    folder = scan_image_folder(Path(data))
    if val_data is not None:
        train, val = folder, scan_image_folder(Path(val_data), classes=folder.classes, param="val_data")
    else:
        train, val = split(folder, DEFAULT_VAL_SPLIT if val_split is None else val_split, seed)
    if min(len(train), len(val)) < plan.workers:
        raise UsageError(f"{plan.workers} workers need at least {plan.workers} training and validation images "
                         f"each, got {len(train)} and {len(val)}", hint="add images or use fewer workers")
    base = _resolve_base(model, Path(checkpoint) if checkpoint else None, catalog, cache_dir)

    from ..formats.keras_models import import_keras, import_tensorflow

    if strategy == "auto" and plan.kind == "default":  # only now: counting GPUs imports TensorFlow
        plan = plan_strategy(strategy, os.environ.get("TF_CONFIG"), gpus=local_gpu_count())
    tf = import_tensorflow()
    dist = make_strategy(plan)  # before any other TF op: multi-worker needs that
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    size = base.entry.input_size[:2]
    my_train = train.shard(plan.worker_index, plan.workers)
    my_val = val.shard(plan.worker_index, plan.workers)
    state: dict[str, Any] = {"history": [], "best_score": None, "best_weights": None, "best_epoch": 0}
    interrupted = False
    head_lr = HEAD_LEARNING_RATE if learning_rate is None else learning_rate

    if batch_size < dist.num_replicas_in_sync:
        raise UsageError(f"batch_size={batch_size} is smaller than the {dist.num_replicas_in_sync} devices "
                         "training in sync", hint=f"use batch_size={dist.num_replicas_in_sync} or more",
                         params=("batch_size",))
    with dist.scope():
        backbone, head, full = _backbone_and_head(base, train.classes)
    state["model"] = full
    workdir = tempfile.TemporaryDirectory(prefix="mobilenet-zoo-features-")
    # the images that calibrate model_int8.tflite; with quantize, also those that calibrate the int8
    # backbone whose features the head learns from, so both are the same quantization
    calibration = _calibration_sample(train, calibration_size)
    # One device: each validation image exactly once. Several: workers must run the same
    # number of steps (collectives) and no replica may get an empty last batch (TF's CPU
    # convolution fails on one), so validation repeats and a few images count twice per
    # epoch. That only picks the best epoch; the reported top-1 is measured exactly at the end.
    several = dist.num_replicas_in_sync > 1
    val_steps = _steps(len(val), batch_size) if several else None
    common = dict(epochs=epochs, val_steps=val_steps, batch=batch_size, show=progress, state=state)

    def head_phase(phase: str) -> None:
        """Run the frozen backbone once over the images, then train the head on the cached features.

        With ``quantize``, the features of the backbone as ``model_int8.tflite`` will run it join
        the float ones (see ``zoo.training.quantized_features``): the validation score that picks the
        best epoch is then the mean of the float and the int8 top-1.
        """
        copies = 2 if quantize else 1
        images = (len(my_train) * (1 + AUGMENTED_VIEWS) + len(my_val)) * copies
        if progress and phase == "head":
            print(f"{base.entry.id}: {len(train)} training and {len(val)} validation images, "
                  f"{len(train.classes)} classes; running the frozen backbone once over {images} images"
                  + (" (float and int8)" if quantize else ""), file=sys.stderr, flush=True)
        elif progress:
            print(f"{phase}: running the trained backbone, float and int8, once over {images} images",
                  file=sys.stderr, flush=True)
        tick = time.perf_counter()
        int8 = None
        tag = phase.replace(" ", "_")  # each phase its own files: never truncate a map still in use
        if quantize:
            from .quantized_features import int8_backbone

            int8 = int8_backbone(backbone, base.entry, calibration, Path(workdir.name) / tag)
        feats, labels = _extract_features(tf, backbone, my_train, size, batch_size, AUGMENTED_VIEWS,
                                          Path(workdir.name), f"{tag}_train", seed, int8)
        vfeats, vlabels = _extract_features(tf, backbone, my_val, size, batch_size, 0,
                                            Path(workdir.name), f"{tag}_val", seed, int8)
        state.setdefault("feature_extraction", []).append(
            {"phase": phase, "images": images, "int8": bool(quantize),
             "seconds": round(time.perf_counter() - tick, 3)})
        _train(tf, keras, dist, head, _feature_dataset(tf, feats, labels, batch_size, True, seed),
               _feature_dataset(tf, vfeats, vlabels, batch_size, False, seed, repeat=several),
               phase=phase, steps=_steps(len(train) * (1 + AUGMENTED_VIEWS) * copies, batch_size),
               learning_rate=head_lr, **common)

    try:
        # ---- head-only: the frozen backbone runs once per image
        try:
            head_phase("head")
        except KeyboardInterrupt:
            interrupted = True
        # ---- the whole network, at a lower learning rate, batch norm frozen
        if train_backbone and not interrupted:
            if state["best_weights"] is not None:
                full.set_weights(state["best_weights"])
            _unfreeze_except_batch_norm(keras, backbone)
            try:
                _train(tf, keras, dist, full,
                       image_dataset(my_train, size, batch=batch_size, augment=True, shuffle=True, repeat=True,
                                     seed=seed),
                       image_dataset(my_val, size, batch=batch_size, repeat=several),
                       phase="backbone", steps=_steps(len(train), batch_size),
                       learning_rate=head_lr * BACKBONE_LR_FACTOR, **common)
            except KeyboardInterrupt:
                interrupted = True
            backbone.trainable = False
            # ---- with quantize: the head again, on the trained backbone's float and int8 features
            if quantize and not interrupted:
                full.set_weights(state["best_weights"])
                state["best_score"] = None  # from here the score is the mean of float and int8 top-1
                try:
                    head_phase("int8 head")
                except KeyboardInterrupt:
                    interrupted = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        workdir.cleanup()
    if state["best_weights"] is None:
        raise TrainingInterrupted("interrupted before the first epoch finished: no model to keep, nothing written",
                                  hint="let at least one epoch finish (lower --batch-size or use less data to see one sooner)")
    full.set_weights(state["best_weights"])
    result = FinetuneResult(out=None, classes=list(train.classes), train_images=len(train),
                            val_images=len(val), val_top1=None, tflite=None, tflite_top1=None,
                            quantize=quantize, interrupted=interrupted,
                            epochs_done=len(state["history"]), history=state["history"])
    if not plan.is_chief:
        result.seconds = round(time.perf_counter() - start, 2)
        return result
    if interrupted:
        print(f"interrupted: writing the best model so far (epoch {state['best_epoch']})", file=sys.stderr)
    _write_out(full, base, train, val, out, overwrite, quantize, result, calibration, command,
               {"epochs": epochs, "batch_size": batch_size, "learning_rate": head_lr,
                "backbone_learning_rate": head_lr * BACKBONE_LR_FACTOR if train_backbone else None,
                "train_backbone": train_backbone, "strategy": strategy, "strategy_used": plan.kind,
                "replicas": int(dist.num_replicas_in_sync), "workers": plan.workers,
                "augmented_views": AUGMENTED_VIEWS, "best_epoch": state["best_epoch"],
                "int8_aware_head": bool(quantize), "feature_extraction": state.get("feature_extraction", []),
                "epochs_done": len(state["history"]), "interrupted": interrupted, "seed": seed,
                "history": state["history"]})
    result.seconds = round(time.perf_counter() - start, 2)
    return result


# ----------------------------------------------------------------------------- writing OUT
def _write_out(full: Any, base: _Base, train: ImageFolder, val: ImageFolder, out: Path, overwrite: bool,
               quantize: str | None, result: FinetuneResult, calibration: Sequence[str],
               command: Sequence[str] | None, training: dict[str, Any]) -> None:
    from ..formats import finetuned as names
    from .export import (preprocessed_batches, publish, staging_path, write_int8_tflite, write_saved_model,
                         write_tflite)
    from ..formats.finetuned import derived_entry
    from ..formats.tflite import load_tflite

    staging = staging_path(out)
    staging.mkdir()
    try:
        size = base.entry.input_size[:2]
        entry = derived_entry(base.base_entry, out.name, tuple(train.classes))
        timings: dict[str, float] = {}
        tick = time.perf_counter()
        full.save(staging / names.KERAS_FILE)
        saved = write_saved_model(full, staging / names.SAVED_MODEL_DIR)
        timings["keras_and_saved_model"] = round(time.perf_counter() - tick, 3)
        tick = time.perf_counter()
        write_tflite(saved, staging / names.TFLITE_FILE)
        timings["tflite"] = round(time.perf_counter() - tick, 3)
        (staging / names.LABELS_FILE).write_text("".join(c + "\n" for c in train.classes), encoding="utf-8")
        if quantize:
            tick = time.perf_counter()
            write_int8_tflite(saved, staging / names.INT8_TFLITE_FILE,
                              lambda: preprocessed_batches(calibration, size), "uint8")
            timings["int8_tflite_convert_and_calibrate"] = round(time.perf_counter() - tick, 3)
        # accuracy of each deliverable on the held-out images, the same files for all three
        from ..formats.keras_models import import_tensorflow

        # a plain call, not predict_on_batch: under a strategy that would split and re-join batches
        infer = import_tensorflow().function(lambda x: full(x, training=False), reduce_retracing=True)
        runners = {"val_top1": lambda x: infer(x).numpy(),
                   "tflite_top1": load_tflite(entry, staging / names.TFLITE_FILE)}
        if quantize:
            runners["int8_top1"] = load_tflite(entry, staging / names.INT8_TFLITE_FILE)
        scores = _accuracies(runners, val, size)
        metrics = {**scores, "val_images": len(val), "train_images": len(train),
                   "best_val_accuracy_during_training": training["history"] and max(
                       (h["val_accuracy"] or 0.0) for h in training["history"]) * 100}
        manifest = {
            "kind": names.MANIFEST_KIND, "version": 1,
            "base": base.base_entry.to_dict(), "base_id": base.base_entry.id,
            "started_from": str(base.path), "classes": list(train.classes),
            "preprocessing": {**base.base_entry.preprocessing, "augmentation (training only)":
                              "random crop 75-100% of each side, brightness +-0.08, contrast 0.9-1.1; no flip"},
            "input": {"shape": [None, *base.entry.input_size], "dtype": "float32", "range": [-1.0, 1.0]},
            "output": f"softmax probabilities over {len(train.classes)} classes, in labels.txt order",
            "files": {"keras": names.KERAS_FILE, "saved_model": names.SAVED_MODEL_DIR,
                      "tflite": names.TFLITE_FILE, "labels": names.LABELS_FILE,
                      **({"int8_tflite": names.INT8_TFLITE_FILE} if quantize else {})},
            "quantization": ({"mode": "full-integer post-training", "io_type": "uint8",
                              "calibration_images": len(calibration),
                              "head_trained_on": "float and int8 backbone features"} if quantize else None),
            "data": {"train": str(train.root), "val": str(val.root), "train_images": len(train),
                     "val_images": len(val), "per_class_train": train.counts()},
            "metrics": metrics, "training": training, "export_seconds": timings,
            "command": shlex.join(command) if command else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        from .._util.atomic import atomic_write_json

        atomic_write_json(staging / names.MANIFEST, manifest)  # last: its presence means "complete"
        publish(staging, out, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out = str(out)
    result.tflite = str(out / names.TFLITE_FILE)
    result.int8_tflite = str(out / names.INT8_TFLITE_FILE) if quantize else None
    result.val_top1 = scores["val_top1"]
    result.tflite_top1 = scores["tflite_top1"]
    result.int8_top1 = scores.get("int8_top1")


def _calibration_sample(train: ImageFolder, limit: int) -> list[str]:
    """A representative sample: ``limit`` training images taken evenly (files are grouped by class)."""
    from .export import spread

    return spread(list(train.files), limit)


def _accuracies(runners: dict[str, Any], val: ImageFolder, size: Sequence[int]) -> dict[str, float]:
    from .export import preprocessed_batches

    labels = np.asarray(val.labels)
    correct = {name: 0 for name in runners}
    row = 0
    for batch in preprocessed_batches(val.files, size, batch=64):
        truth = labels[row:row + len(batch)]
        row += len(batch)
        for name, run in runners.items():
            correct[name] += int(np.sum(np.argmax(np.asarray(run(batch)), axis=1) == truth))
    return {name: round(100.0 * count / max(1, len(val)), 2) for name, count in correct.items()}
