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
  validation top-1, so one set of weights serves the float and the int8 file;
* ``qat=True`` as well: quantization-aware training (``zoo.training.qat``): backbone and head
  train as their fake-quant network, whose own ranges make ``model_int8.tflite``; the int8
  backbone the head also learns from is that network converted, so it is the file's backbone.

Best model: after every epoch the validation top-1 is checked and the best weights are
kept; they are what is exported. Ctrl-C stops training cleanly and exports the best
model so far (``finetune.json`` says ``"interrupted": true``); before the first epoch
ends there is nothing to keep, and nothing is written.

Output goes to a hidden staging directory next to OUT and is renamed into place at
the end (``finetune.json`` is written last), so an OUT that exists is always complete.
Distribution (``strategy``): see ``zoo.training.distribute``; only the chief writes OUT.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..catalog.registry import Catalog, Entry
from ..errors import RestoreError, UsageError, ZooError
from .._util.progress import Reporter
from .._util.safepath import remove_tree
from .feature_cache import ROWS_NAME, FeatureStore, backbone_digest, feature_key
from .features import extract_features, feature_dataset, keras_features, steps_for
from .inputs import ImageFolder, files_digest, image_dataset, scan_image_folder, split
from .loop import History, train_epochs
from .options import DEFAULT_CALIBRATION_IMAGES, FROM_SCRATCH_ENOUGH_IMAGES, check_feature_runtime, check_quantize
from .qat import RANGES_CALIBRATED, calibrate_backbone, check_family, check_qat
from .runtime_backbone import CheckedBackbone, float_backbone, keras_reason

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
log = logging.getLogger(__name__)


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
    path: Path | None               # slim checkpoint prefix or model.keras; None from scratch
    kind: str                       # "slim", "keras" or "scratch" (random initialisation)


def _resolve_base(model: str | Path | Entry, checkpoint: Path | None, catalog: Catalog | None,
                  cache_dir: Path | None, qat: bool = False, from_scratch: bool = False) -> _Base:
    """Find the trainable weights for ``model`` without loading them (fetching if needed).

    ``checkpoint``: a local slim checkpoint that ``model`` (a catalog name) names the architecture of.
    ``from_scratch``: no weights at all, only the catalog model's architecture (nothing is fetched).
    """
    from ..formats.resolve import locate, locate_weights

    if from_scratch:
        return _scratch_base(locate(model, catalog=catalog), checkpoint, qat)
    ref = locate_weights(model, catalog=catalog)  # a .tflite or .pb is refused here, with or without checkpoint
    if checkpoint is not None:
        ref = locate_weights(checkpoint, catalog=catalog, entry=ref.entry)
    entry = ref.entry
    check_family(entry, qat)
    if entry.quantized and not qat:
        float_id = entry.id.removesuffix("_quant")
        known = float_id in (catalog if catalog is not None else ref.catalog or ())
        raise UsageError(
            f"{entry.id} is a quantized model: its checkpoint was trained with fake-quantization and its "
            ".tflite is integer-only; neither can be fine-tuned as a float model here",
            hint=(f"fine-tune the float model {float_id} with quantize='int8' for an integer TFLite, or "
                  f"{entry.id} itself quantization-aware (quantize='int8', qat=True)"
                  if known else "fine-tune a float model with quantize='int8'"), params=("quantize", "qat"))
    try:
        path = ref.file(cache_dir)
    except RestoreError as exc:
        raise RestoreError(f"{entry.id}: the tarball holds no trainable checkpoint ({exc.message})",
                           hint="fine-tune a float model whose tarball ships a .ckpt") from None
    return _Base(entry, ref.base_entry or entry, path, "keras" if ref.kind == "finetuned" else "slim")


def _scratch_base(ref: Any, checkpoint: Path | None, qat: bool) -> _Base:
    """The architecture of a published float model, to train from random weights."""
    entry = ref.entry
    if ref.kind != "catalog":
        where = ref.path or ref.folder
        raise UsageError(f"from_scratch trains a catalog architecture from random weights; {where} names trained "
                         f"weights (of {entry.id})", params=("from_scratch",),
                         hint=f"name the catalog id ({entry.id}) instead, or drop from_scratch to fine-tune these weights")
    if checkpoint is not None or qat or entry.quantized:
        what = ("checkpoint" if checkpoint is not None else "qat" if qat else f"the _quant model {entry.id}")
        raise UsageError(f"from_scratch starts from random weights: it cannot be combined with {what}",
                         hint=(f"name the float model {entry.id.removesuffix('_quant')}" if entry.quantized
                               else f"drop {what} or from_scratch"),
                         params=("from_scratch", "checkpoint" if checkpoint is not None else "qat"))
    return _Base(entry, entry, None, "scratch")


def warn_small_scratch_set(entry: Entry, images: int) -> None:
    """From random weights, a MobileNet needs a large data set; say so before the hours go in."""
    if images >= FROM_SCRATCH_ENOUGH_IMAGES:
        return
    from ..notices import warn

    warn(f"{entry.id} from scratch on {images} training images: a MobileNet trained from random weights "
         f"needs far more (the published ones saw ImageNet's 1.28 million; below about "
         f"{FROM_SCRATCH_ENOUGH_IMAGES:,} it mostly memorises); fine-tuning the pretrained weights "
         "instead is almost always better on a set this size")


def _backbone_and_head(base: _Base, classes: Sequence[str], qat: bool = False,
                       seed: int = 0) -> tuple[Any, Any, Any, str | None]:
    """(backbone: image -> feature vector, new head, full model, where the fake-quant ranges come
    from). Call inside the strategy scope. ``qat``: the fake-quant networks (``zoo.training.qat``);
    without it, or when the ranges are not known yet (to calibrate), the last is None."""
    from ..formats.keras_models import import_keras

    keras = import_keras()
    ranges_from = None
    if qat:
        from .qat import qat_network

        network, ranges_from = qat_network(base.entry, base.path, kind=base.kind)
        backbone = (network.get_layer(BACKBONE_NAME) if base.kind == "keras"
                    else _cut_before_classifier(keras, network, base.entry))
    elif base.kind == "scratch":
        from ..formats.keras_models import build_keras_model

        backbone = _cut_before_classifier(keras, build_keras_model(base.entry), base.entry)
    elif base.kind == "keras":
        from ..formats.finetuned import load_keras_file

        backbone = load_keras_file(base.entry, base.path).keras_model.get_layer(BACKBONE_NAME)
    else:
        from ..formats.ckpt import restore_checkpoint

        restored = restore_checkpoint(base.entry, base.path).keras_model
        backbone = _cut_before_classifier(keras, restored, base.entry)
    backbone.trainable = False
    features = int(backbone.output.shape[-1])
    if qat:
        from .qat import qat_head

        classifier = qat_head(features, len(classes), "classes", seed)
    else:
        classifier = keras.layers.Dense(len(classes), activation="softmax", name="classes")
    head = keras.Sequential([keras.Input((features,)), keras.layers.Dropout(HEAD_DROPOUT), classifier],
                            name=HEAD_NAME)
    inputs = keras.Input(tuple(base.entry.input_size), name="images")
    # training=False: batch norm stays in inference mode even when the backbone is unfrozen
    outputs = head(backbone(inputs, training=False))
    return backbone, head, keras.Model(inputs, outputs, name="finetuned_" + _safe(base.base_entry.id)), ranges_from


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


# ----------------------------------------------------------------------------- the run
def finetune(model: str | Path | Entry, data: str | Path, out: str | Path, *, epochs: int = 5,
             batch_size: int = 32, learning_rate: float | None = None, train_backbone: bool = False,
             val_data: str | Path | None = None, val_split: float | None = None, quantize: str | None = None,
             strategy: str = "auto", overwrite: bool = False, checkpoint: str | Path | None = None,
             catalog: Catalog | None = None, cache_dir: Path | None = None, seed: int = 0,
             progress: object = None, command: Sequence[str] | None = None,
             calibration_size: int = DEFAULT_CALIBRATION_IMAGES, restart: bool = False,
             qat: bool = False, feature_runtime: str = "auto", from_scratch: bool = False) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` (``DIR/<class>/*.jpg``) and write OUT (see the module docstring).

    ``model``: anything ``zoo.formats.resolve.locate_weights`` accepts: a catalog id or Entry (its
    slim checkpoint, fetched if needed; or ``checkpoint``, a local slim checkpoint prefix for that
    entry), a checkpoint, or a directory written by ``finetune``.
    ``learning_rate``: of the head (default 1e-3, Adam); the backbone phase uses a tenth.
    ``val_split``: fraction of each class held out when no ``val_data`` (default 0.2).
    ``quantize='int8'``: also write the full-integer ``model_int8.tflite``. ``qat``: train for it
    quantization-aware (v1 / v2; ``model`` may then be a ``_quant`` model, continued from its ranges).
    ``progress``: the contract every long call shares (``zoo._util.progress``; each epoch is a
    task counted in steps, with its loss, accuracy and, when it ends, validation accuracy).
    ``command``: recorded in finetune.json (the CLI passes its argv).
    ``restart``: discard the progress an interrupted run of the same OUT saved, instead of resuming
    from it (``zoo.training.resume``; multi-worker runs do not resume).
    ``feature_runtime``: what runs the frozen backbone's feature passes: ``litert`` (a float TFLite
    copy, checked against Keras on the first batch), ``keras``, or ``auto`` (LiteRT when the pass
    is long enough to pay for the conversion; ``zoo.training.runtime_backbone``).
    ``from_scratch``: train every layer of ``model``'s architecture (a catalog id) from random
    weights, batch norm included, for ``epochs`` epochs at ``learning_rate``: no checkpoint is read
    or fetched. For large data sets of one's own; a warning says when the set looks too small.
    With ``quantize='int8'`` the int8 file is calibrated after training (post-training).
    """
    start = time.perf_counter()
    from .distribute import local_gpu_count, make_strategy, plan_strategy
    from .publish import check_target

    _check_options(epochs, batch_size, learning_rate, quantize, val_data, val_split)
    check_qat(qat, quantize)
    check_feature_runtime(feature_runtime)
    plan = plan_strategy(strategy, os.environ.get("TF_CONFIG"))  # checks TF_CONFIG; no TensorFlow yet
    out = Path(out)
    if plan.is_chief:
        check_target(out, overwrite)
    train, val = _training_sets(data, val_data, val_split, seed)
    if min(len(train), len(val)) < plan.workers:
        raise UsageError(f"{plan.workers} workers need at least {plan.workers} training and validation images "
                         f"each, got {len(train)} and {len(val)}", hint="add images or use fewer workers")
    base = _resolve_base(model, Path(checkpoint) if checkpoint else None, catalog, cache_dir, qat, from_scratch)
    if from_scratch:
        warn_small_scratch_set(base.entry, len(train))
    if strategy == "auto" and plan.kind == "default":  # only now: counting GPUs imports TensorFlow
        plan = plan_strategy(strategy, os.environ.get("TF_CONFIG"), gpus=local_gpu_count())
    from ..formats.keras_models import import_tensorflow

    import_tensorflow()
    dist = make_strategy(plan)  # before any other TF op: multi-worker needs that
    if batch_size < dist.num_replicas_in_sync:
        raise UsageError(f"batch_size={batch_size} is smaller than the {dist.num_replicas_in_sync} devices "
                         "training in sync", hint=f"use batch_size={dist.num_replicas_in_sync} or more",
                         params=("batch_size",))
    head_lr = HEAD_LEARNING_RATE if learning_rate is None else learning_rate
    calibration = _calibration_sample(train, calibration_size)
    resumable = _open_progress(out, base, train, val, plan, restart, {
        "epochs": epochs, "batch_size": batch_size, "learning_rate": head_lr, "train_backbone": train_backbone,
        "quantize": quantize, "seed": seed, "calibration_images": len(calibration), "strategy": plan.kind,
        "replicas": int(dist.num_replicas_in_sync), "augmented_views": AUGMENTED_VIEWS, "qat": qat,
        "feature_runtime": feature_runtime, "from_scratch": from_scratch})
    try:
        run = _Run(base, train, val, plan, dist, batch_size=batch_size, epochs=epochs, seed=seed,
                   quantize=quantize, head_lr=head_lr, calibration=calibration, progress=resumable,
                   cache_dir=cache_dir, qat=qat, feature_runtime=feature_runtime)
        with Reporter(progress) as report:
            interrupted = run.train(report, train_backbone or from_scratch)
        history = run.history
        if history.best_weights is None:
            if resumable is not None:
                resumable.remove()  # Ctrl-C before any epoch: nothing is kept, as the user asked to stop
            raise TrainingInterrupted("interrupted before the first epoch finished: no model to keep, nothing "
                                      "written", hint="let at least one epoch finish (a smaller batch_size or "
                                                      "less data shows one sooner)", params=("batch_size",))
        history.restore_best()
        result = FinetuneResult(out=None, classes=list(train.classes), train_images=len(train),
                                val_images=len(val), val_top1=None, tflite=None, tflite_top1=None,
                                quantize=quantize, interrupted=interrupted,
                                epochs_done=len(history.records), history=history.records)
        if plan.is_chief:
            if interrupted:
                log.info("interrupted: writing the best model so far (epoch %d)", history.best_epoch)
            _write_out(run.full, base, train, val, out, overwrite, quantize, result, run.calibration, command,
                       run.training_record(strategy, train_backbone, interrupted), run.quantization_record())
        if resumable is not None:
            resumable.remove()  # published: the progress has done its job
    finally:
        if resumable is not None:
            resumable.close()
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def _open_progress(out: Path, base: _Base, train: ImageFolder, val: ImageFolder, plan: Any, restart: bool,
                   options: dict[str, Any]) -> Any:
    """The run's progress folder (``zoo.training.resume``), or None on a multi-worker cluster.

    Also clears what dead runs left beside OUT (staging folders of processes that no longer run)."""
    from .publish import remove_dead_leftovers
    from .resume import Progress, run_identity

    if plan.kind == "multiworker":
        return None
    remove_dead_leftovers(out)
    identity = run_identity(model=base.base_entry.id, weights=base.path, train=train, val=val, options=options)
    progress = Progress.open(out, identity, restart=restart)
    if progress.why and not restart:
        from ..notices import warn

        warn(f"not resuming the interrupted run of out={out}: {progress.why}; starting afresh")
    elif progress.why:
        log.info("%s", progress.why)
    return progress


def _check_options(epochs: int, batch_size: int, learning_rate: float | None, quantize: str | None,
                   val_data: object, val_split: float | None) -> None:
    if epochs < 1 or batch_size < 1:
        raise UsageError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}",
                         params=("epochs", "batch_size"))
    if learning_rate is not None and not learning_rate > 0:
        raise UsageError(f"learning_rate must be positive, got {learning_rate}", params=("learning_rate",))
    check_quantize(quantize)
    if val_data is not None and val_split is not None:
        raise UsageError("val_data and val_split exclude each other",
                         hint="a validation folder, or a fraction of data held out, not both",
                         params=("val_data", "val_split", "data"))


def _training_sets(data: str | Path, val_data: str | Path | None, val_split: float | None,
                   seed: int) -> tuple[ImageFolder, ImageFolder]:
    """(train, validation), every file checked before anything trains."""
    folder = scan_image_folder(Path(data))
    if val_data is not None:
        return folder, scan_image_folder(Path(val_data), classes=folder.classes, param="val_data")
    return split(folder, DEFAULT_VAL_SPLIT if val_split is None else val_split, seed)


class _LazyInt8:
    """The int8 backbone, converted only when a feature pass needs it (not for features on disk)."""

    def __init__(self, run: "_Run", directory: Path):
        self.run, self.directory, self.model = run, directory, None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.model is None:
            from .quantized_features import int8_backbone

            remove_tree(self.directory)  # an interrupted conversion's leftovers

            self.model = int8_backbone(self.run.backbone, self.run.base.entry, self.run.calibration, self.directory,
                                       own_ranges=self.run.qat)
        return self.model(images)


class _Run:
    """One training run: the model, this worker's share of the data, and the phases it goes through.

    Phases, in order: ``head`` (frozen backbone, features computed once); with
    ``train_backbone``, ``backbone`` (everything but batch norm, at a tenth of the learning rate);
    with both that and ``quantize``, ``int8 head`` (the head again, on the trained backbone's
    float and int8 features). Ctrl-C in any phase ends the run; the best epoch so far is kept.

    With ``progress`` (``zoo.training.resume``) every epoch's end is saved, and a run that finds a
    saved epoch carries on from it: the phases already done are skipped, the phase under way
    restarts at its next epoch with the model, the optimizer and the best weights as they were.
    """

    def __init__(self, base: _Base, train: ImageFolder, val: ImageFolder, plan: Any, dist: Any, *, batch_size: int,
                 epochs: int, seed: int, quantize: str | None, head_lr: float, calibration: list[str],
                 progress: Any = None, cache_dir: Path | None = None, qat: bool = False,
                 feature_runtime: str = "auto"):
        from ..config import cache_dir as default_cache_dir
        from ..formats.keras_models import import_keras, import_tensorflow

        self.tf, self.keras = import_tensorflow(), import_keras()
        self.keras.utils.set_random_seed(seed)
        self.base, self.train_set, self.val_set, self.plan, self.dist = base, train, val, plan, dist
        self.batch, self.epochs, self.seed, self.quantize, self.head_lr = batch_size, epochs, seed, quantize, head_lr
        # quantize: the head also learns from the backbone as the int8 file runs it (with qat, that is the
        # backbone converted from its own fake-quant ranges; the fake-quant network models the rest)
        self.qat, self.int8_features = qat, bool(quantize) and base.kind != "scratch"
        self.feature_runtime = feature_runtime
        self.progress = progress
        self.feature_store = FeatureStore(cache_dir or default_cache_dir())
        # the images that calibrate model_int8.tflite; with quantize, also those that calibrate the int8
        # backbone whose features the head learns from, so both are the same quantization
        self.calibration = calibration
        self.size = base.entry.input_size[:2]
        self.my_train = train.shard(plan.worker_index, plan.workers)
        self.my_val = val.shard(plan.worker_index, plan.workers)
        with dist.scope():
            self.backbone, self.head, self.full, self.ranges_from = _backbone_and_head(base, train.classes, qat, seed)
        if qat and self.ranges_from is None:  # a float model: its fake-quant ranges start from the calibration images
            self.ranges_from = RANGES_CALIBRATED.format(n=calibrate_backbone(self.backbone, calibration, self.size))
        self.history = History(self.full)
        self.feature_passes: list[dict[str, Any]] = []
        self.resumed: dict[str, Any] | None = None               # from the progress folder
        self.features_from_cache: list[dict[str, Any]] = []      # feature rows an earlier run left
        # One device: each validation image exactly once. Several: workers must run the same
        # number of steps (collectives) and no replica may get an empty last batch (TF's CPU
        # convolution fails on one), so validation repeats and a few images count twice per
        # epoch. That only picks the best epoch; the reported top-1 is measured exactly at the end.
        self.several = dist.num_replicas_in_sync > 1
        self.val_steps = steps_for(len(val), batch_size) if self.several else None

    def train(self, report: Reporter, train_backbone: bool) -> bool:
        """Run the phases (from the saved epoch, if any); True when Ctrl-C ended the run early."""
        phases = [("head", lambda start, state: self.head_phase("head", report, start, state))]
        if self.base.kind == "scratch":  # no features worth caching: every layer learns from the first step
            phases = [("scratch", lambda start, state: self.backbone_phase(report, start, state, scratch=True))]
        elif train_backbone:
            phases.append(("backbone", lambda start, state: self.backbone_phase(report, start, state)))
            if self.int8_features:
                phases.append(("int8 head", lambda start, state: self.head_phase("int8 head", report, start, state)))
        first_phase, first_epoch, optimizer = self._resume([name for name, _ in phases])
        with self._work_folder() as workdir:
            self.workdir = workdir  # the float and int8 backbones' conversions (feature passes)
            try:
                for index, (name, phase) in enumerate(phases):
                    if index < first_phase:
                        continue
                    self.phase_index = index
                    resuming = index == first_phase and first_epoch > 0
                    phase(first_epoch if resuming else 0, optimizer if resuming else None)
            except KeyboardInterrupt:
                return True
        return False

    @contextlib.contextmanager
    def _work_folder(self) -> Iterator[Path]:
        """Scratch for the backbones' conversions: in the progress folder (emptied at the start, gone
        with the folder, so a killed run leaves nothing behind), or, without one (multi-worker), a
        temporary folder."""
        if self.progress is None:
            with tempfile.TemporaryDirectory(prefix="mobilenet-zoo-backbones-") as workdir:
                yield Path(workdir)
            return
        work = self.progress.work_folder()
        try:
            yield work
        finally:
            remove_tree(work)

    def _resume(self, phases: list[str]) -> tuple[int, int, list[Any] | None]:
        """Load the saved epoch into the model and history: (phase index, epochs done in it, optimizer)."""
        saved = self.progress.saved if self.progress is not None else None
        if saved is None:
            return 0, 0, None
        from .resume import check_fits

        folder = self.progress.folder
        weights = self.full.get_weights()
        check_fits(saved.weights, weights, "weights", folder)
        if saved.best_weights is not None:
            check_fits(saved.best_weights, weights, "best weights", folder)
        if saved.phase >= len(phases) or saved.epoch > self.epochs:
            raise UsageError(f"cannot resume from {folder}: it is at phase {saved.phase} epoch {saved.epoch}, "
                             "beyond this run's", hint="pass restart=True to start afresh", params=("restart",))
        self.full.set_weights(saved.weights)
        self.history.records = list(saved.history)
        self.history.best_score, self.history.best_epoch = saved.best_score, saved.best_epoch
        self.history.best_weights = saved.best_weights
        self.feature_passes = list(saved.feature_passes)
        phase, epoch = saved.phase, saved.epoch
        if epoch >= self.epochs:          # that phase had finished: the next one starts afresh
            phase, epoch = phase + 1, 0
        if phase >= len(phases):
            log.info("resuming %s: training had finished (%d epochs); writing OUT", self.base.entry.id,
                     len(saved.history))
        elif epoch:
            log.info("resuming at %s epoch %d/%d", phases[phase], epoch + 1, self.epochs)
        else:
            log.info("resuming at the start of the %s phase", phases[phase])
        self.resumed = {"phase": phases[phase] if phase < len(phases) else None, "epoch": epoch + 1,
                        "epochs_done_before": len(saved.history)}
        return phase, epoch, saved.optimizer if epoch else None

    def _fit(self, model: Any, train_data: Any, val_ds: Any, phase: str, steps: int, learning_rate: float,
             report: Reporter, start_epoch: int, optimizer_state: list[Any] | None) -> None:
        train_epochs(self.tf, self.keras, self.dist, model, train_data, val_ds, phase=phase,
                     model_id=self.base.entry.id, epochs=self.epochs, steps=steps, val_steps=self.val_steps,
                     learning_rate=learning_rate, seed=self.seed * 10 + self.phase_index, history=self.history,
                     report=report, start_epoch=start_epoch, optimizer_state=optimizer_state,
                     on_epoch_end=self._save_epoch if self.progress is not None else None)

    def _save_epoch(self, epochs_done: int, optimizer_state: list[Any]) -> None:
        from .resume import SavedEpoch

        h = self.history
        self.progress.save_epoch(SavedEpoch(
            phase=self.phase_index, epoch=epochs_done, history=h.records, best_score=h.best_score,
            best_epoch=h.best_epoch, feature_passes=self.feature_passes, weights=self.full.get_weights(),
            best_weights=h.best_weights, optimizer=optimizer_state))

    def head_phase(self, phase: str, report: Reporter, start_epoch: int = 0,
                   optimizer_state: list[Any] | None = None) -> None:
        """Run the frozen backbone once over the images, then train the head on the cached features.

        With ``quantize``, the features of the backbone as ``model_int8.tflite`` will run it join
        the float ones (see ``zoo.training.quantized_features``): the validation score that picks
        the best epoch is then the mean of the float and the int8 top-1. A pass already on disk
        (a resumed run) is not run again.
        """
        if phase != "head" and not start_epoch:  # after backbone training: the best backbone, scored anew
            self.history.restore_best()
            self.history.restart_scoring()
        copies = 2 if self.int8_features else 1
        images = (len(self.my_train) * (1 + AUGMENTED_VIEWS) + len(self.my_val)) * copies
        log.info("%s: %d training and %d validation images, %d classes; %s: running the %s backbone once over "
                 "%d images%s", self.base.entry.id, len(self.train_set), len(self.val_set),
                 len(self.train_set.classes), phase, "frozen" if phase == "head" else "trained", images,
                 " (float and int8)" if self.int8_features else "")
        tick = time.perf_counter()
        tag = phase.replace(" ", "_")
        int8 = _LazyInt8(self, self.workdir / tag) if self.int8_features else None
        floats = self._float_features(self.workdir / f"{tag}_float", images // copies)
        digest = backbone_digest(self.backbone)
        train = self._features(self.my_train, AUGMENTED_VIEWS, "train", phase, digest, int8, floats)
        val = self._features(self.my_val, 0, "validation", phase, digest, int8, floats)
        computed = (train.computed + val.computed) * copies
        if not computed:
            log.info("%s: the features of all %d images were already in the cache (the same backbone, images "
                     "and preprocessing); the backbone did not run", phase, images)
        elif computed < images:
            log.info("%s: %d of the %d images' features were already on disk (an interrupted pass); "
                     "computed the rest", phase, images - computed, images)
        if computed < images:
            self.features_from_cache.append({"phase": phase, "images": images, "from_cache": images - computed})
        if computed:
            self.feature_passes.append({"phase": phase, "images": images, "computed": computed,
                                        "int8": self.int8_features, "seconds": round(time.perf_counter() - tick, 3),
                                        **floats.record()})
        self._fit(self.head,
                  lambda seed: feature_dataset(self.tf, train.feats, train.labels, self.batch, True, seed),
                  feature_dataset(self.tf, val.feats, val.labels, self.batch, False, self.seed, repeat=self.several),
                  phase, steps_for(len(self.train_set) * (1 + AUGMENTED_VIEWS) * copies, self.batch),
                  self.head_lr, report, start_epoch, optimizer_state)

    def _float_features(self, directory: Path, rows: int) -> CheckedBackbone:
        """The float rows of a feature pass over ``rows`` images: LiteRT when ``feature_runtime``
        allows it and its first batch matches Keras (``zoo.training.runtime_backbone``)."""
        why = keras_reason(self.feature_runtime, self.base.entry.macs_m, rows, self.qat)
        return CheckedBackbone(keras_features(self.tf, self.backbone),
                               lambda: float_backbone(self.backbone, self.base.entry, directory),
                               keras_because=why)

    def _features(self, folder: ImageFolder, views: int, split: str, phase: str, digest: str,
                  int8: Any, floats: CheckedBackbone) -> Any:
        """One feature pass, through the cache (``zoo.training.feature_cache``): reused when an earlier
        run computed the same, carried on when one was killed half-way."""
        from ..catalog.registry import EVAL_CENTRAL_CROP

        calibration = files_digest(self.calibration) if int8 is not None else None
        key = feature_key(backbone=digest, size=list(self.size), crop=EVAL_CENTRAL_CROP, views=views,
                          seed=self.seed, int8_calibration=calibration, data=folder.fingerprint())
        about = {"model": self.base.base_entry.id, "phase": phase, "split": split, "data": str(folder.root),
                 "images": len(folder) * (1 + views), "int8": int8 is not None,
                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with self.feature_store.slot(key, about, on_wait=lambda text: log.info("%s", text)) as directory:
            return extract_features(self.tf, self.backbone, folder, self.size, self.batch, views, directory,
                                    ROWS_NAME, self.seed, int8, features=floats)

    def backbone_phase(self, report: Reporter, start_epoch: int = 0,
                       optimizer_state: list[Any] | None = None, scratch: bool = False) -> None:
        """The whole network from the best head, at a lower learning rate, batch norm frozen.

        ``scratch``: from random weights, every layer learns, batch norm's statistics too, at the
        head's learning rate."""
        if scratch:
            self.backbone.trainable = True
        else:
            if not start_epoch:
                self.history.restore_best()
            _unfreeze_except_batch_norm(self.keras, self.backbone)
        try:
            self._fit(self.full,
                      lambda seed: image_dataset(self.my_train, self.size, batch=self.batch, augment=True,
                                                 shuffle=True, repeat=True, seed=seed),
                      image_dataset(self.my_val, self.size, batch=self.batch, repeat=self.several),
                      "scratch" if scratch else "backbone", steps_for(len(self.train_set), self.batch),
                      self.head_lr * (1.0 if scratch else BACKBONE_LR_FACTOR),
                      report, start_epoch, optimizer_state)
        finally:
            self.backbone.trainable = False

    def training_record(self, strategy: str, train_backbone: bool, interrupted: bool) -> dict[str, Any]:
        """What finetune.json says about the training."""
        scratch = self.base.kind == "scratch"
        return {"epochs": self.epochs, "batch_size": self.batch, "learning_rate": self.head_lr,
                "backbone_learning_rate": self.head_lr * BACKBONE_LR_FACTOR if train_backbone and not scratch
                else None, "from_scratch": scratch,
                "train_backbone": train_backbone, "strategy": strategy, "strategy_used": self.plan.kind,
                "replicas": int(self.dist.num_replicas_in_sync), "workers": self.plan.workers,
                "augmented_views": AUGMENTED_VIEWS, "best_epoch": self.history.best_epoch,
                "int8_aware_head": self.int8_features, "qat": self.qat, "feature_extraction": self.feature_passes,
                "features_from_cache": self.features_from_cache,
                "epochs_done": len(self.history.records), "interrupted": interrupted, "seed": self.seed,
                "resumed": self.resumed, "run_key": self.progress.key if self.progress is not None else None,
                "history": self.history.records}


    def quantization_record(self) -> dict[str, Any] | None:
        """What finetune.json says about how ``model_int8.tflite`` was quantized."""
        if not self.quantize:
            return None
        if self.qat:
            return {"mode": "quantization-aware training", "io_type": "uint8",
                    "ranges": self.ranges_from, "calibration_images": len(self.calibration)
                    if self.ranges_from.startswith("calibrated") else 0,
                    "fake_quant": "weights after the batch-norm fold (last value, 8 bits, narrow range); outputs "
                                  "after ReLU6, v2's project layers and bypass Adds, and the logits (moving "
                                  "averages, 8 bits)",
                    "converted_from": "the network's own fake-quant ranges (no calibration of the file)"}
        return {"mode": "full-integer post-training", "io_type": "uint8",
                "calibration_images": len(self.calibration),
                "head_trained_on": "float and int8 backbone features" if self.int8_features
                else "float images (trained from scratch; the int8 file is calibrated afterwards)"}


# ----------------------------------------------------------------------------- writing OUT
def _write_out(full: Any, base: _Base, train: ImageFolder, val: ImageFolder, out: Path, overwrite: bool,
               quantize: str | None, result: FinetuneResult, calibration: Sequence[str],
               command: Sequence[str] | None, training: dict[str, Any],
               quantization: dict[str, Any] | None) -> None:
    from ..formats import finetuned as names
    from ..data.images import preprocessed_batches
    from ..formats.saved_model import write_saved_model
    from .export import write_fake_quant_tflite, write_int8_tflite, write_tflite
    from .publish import publish, staging_path
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
        saved = write_saved_model(full, staging / names.SAVED_MODEL_DIR, num_classes=len(train.classes))
        timings["keras_and_saved_model"] = round(time.perf_counter() - tick, 3)
        tick = time.perf_counter()
        write_tflite(saved, staging / names.TFLITE_FILE)
        timings["tflite"] = round(time.perf_counter() - tick, 3)
        (staging / names.LABELS_FILE).write_text("".join(c + "\n" for c in train.classes), encoding="utf-8")
        if quantize and training.get("qat"):  # its own ranges
            tick = time.perf_counter()
            write_fake_quant_tflite(saved, staging / names.INT8_TFLITE_FILE)
            timings["int8_tflite_convert"] = round(time.perf_counter() - tick, 3)
        elif quantize:
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
            "started_from": str(base.path) if base.path is not None else f"random weights (seed {training['seed']})",
            "classes": list(train.classes),
            "preprocessing": {**base.base_entry.preprocessing, "augmentation (training only)":
                              "random crop 75-100% of each side, brightness +-0.08, contrast 0.9-1.1; no flip"},
            "input": {"shape": [None, *base.entry.input_size], "dtype": "float32", "range": [-1.0, 1.0]},
            "output": f"softmax probabilities over {len(train.classes)} classes, in labels.txt order",
            "files": {"keras": names.KERAS_FILE, "saved_model": names.SAVED_MODEL_DIR,
                      "tflite": names.TFLITE_FILE, "labels": names.LABELS_FILE,
                      **({"int8_tflite": names.INT8_TFLITE_FILE} if quantize else {})},
            "quantization": quantization,
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
    from ..data.images import preprocessed_batches

    labels = np.asarray(val.labels)
    correct = {name: 0 for name in runners}
    row = 0
    for batch in preprocessed_batches(val.files, size, batch=64):
        truth = labels[row:row + len(batch)]
        row += len(batch)
        for name, run in runners.items():
            correct[name] += int(np.sum(np.argmax(np.asarray(run(batch)), axis=1) == truth))
    return {name: round(100.0 * count / max(1, len(val)), 2) for name, count in correct.items()}
