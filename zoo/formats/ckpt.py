"""Restore a published TF-slim MobileNet checkpoint into a Keras model (format ``ckpt``).

    model = restore_checkpoint(entry, Path(".../mobilenet_v2_1.0_224.ckpt"))
    probs = model(images)          # float32 [N,H,W,3] in [-1,1] -> [N,1001] softmax
    model.summary()["skipped"]     # what was left out of the checkpoint, and why

How it works: ``keras_models`` builds the matching ``keras.applications`` architecture
(EdgeTPU: our own, ``keras_edgetpu``),
``slim_names`` pairs each Keras weight with its slim variable name and shape, and this
module reads the checkpoint with ``tf.train.load_checkpoint`` (no slim code, no TF1
graph), checks *every* weight before assigning *any*, and reports the rest.

Which weights (``weights=``), by default the set upstream measured its accuracies with:

* v1 -> ``"raw"``: ``research/slim/nets/mobilenet_v1_train.py`` trains with plain SGD
  and no moving average, and ``mobilenet_v1_eval.py`` restores the plain variables.
* v2 -> ``"ema"``: ``research/slim/nets/mobilenet/mobilenet_example.ipynb`` restores the
  checkpoint through ``ExponentialMovingAverage.variables_to_restore()`` "since it
  produces (1.5-2%) higher accuracy". In that fresh graph the map sends the *trainable*
  variables (weights, biases, gamma, beta) to their ``<var>/ExponentialMovingAverage``
  shadows and everything else, i.e. batch-norm ``moving_mean``/``moving_variance``, to
  its plain name. We do the same; shadows of the BN statistics are skipped.
* v3 -> ``"ema"``: the tarballs ship ``ema/`` and ``pristine/`` checkpoints side by side
  (averaged and raw values under the plain names). ``"ema"`` reads ``ema/``, ``"raw"``
  reads ``pristine/``, whichever of the two the given prefix points into.
* EdgeTPU -> ``"ema"``: no upstream eval script says; the models come from the same
  ``mobilenet_v3.py`` library and training setup as v3, whose releases publish EMA.

``weights="ema"`` on a checkpoint that holds no moving averages is an error when asked
for explicitly; under the default it falls back to the plain values and says so in
``summary()["notes"]``.

Always skipped (and listed in ``summary()["skipped"]`` by reason): ``global_step``,
``optimizer_slot`` / ``optimizer_state``, the set not chosen (``ema_shadow`` or
``raw_value``), ``fake_quant_range`` of quantized checkpoints, and anything
``outside_model_scope`` (e.g. loss averages). A quantized checkpoint therefore restores as a *float* model; its
``.tflite`` file is the deployable quantized form. With ``strict=True`` (default) a
variable inside the model's scope that fits no Keras weight is an error; with
``strict=False`` it is skipped as ``not_in_model``; likewise a weight without a moving
average in a checkpoint that has them is an error, or (``strict=False``) loaded from its
plain value with a note. A missing variable or a shape mismatch is always an error,
never a partial load.

``export(dir)`` writes a TensorFlow SavedModel (``keras.Model.export``, endpoint
``serve``), which TF Serving, the TFLite converter and ``tf.saved_model.load`` read.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Entry
from ..layout import spec_for_path
from ..errors import RestoreError
from .base import RestoredModel
from .keras_models import build_keras_model, import_tensorflow
from .slim_names import SCOPE, Binding, bindings_for
from .slim_variables import EMA_SUFFIX, extra_reason, is_ema_shadow, shadow_of

WEIGHT_SETS = ("ema", "raw")
DEFAULT_WEIGHTS = {"v1": "raw", "v2": "ema", "v3": "ema", "edgetpu": "ema"}
_V3_FOLDERS = {"ema": "ema", "raw": "pristine"}
_QUANTIZED_NOTE = ("quantized checkpoint restored as a float model (fake-quant ranges skipped); "
                   "the .tflite file is the deployable quantized form")


class CheckpointModel(RestoredModel):
    """A Keras model holding a slim checkpoint's weights, behind the common interface."""

    format = "ckpt"

    def __init__(self, entry: Entry, source: Path, keras_model: Any, *, weights: str,
                 used: list[str], skipped: dict[str, list[str]], notes: list[str]):
        super().__init__(entry, source)
        self.keras_model = keras_model
        self.weights = weights
        self.used = used
        self.skipped = skipped
        self.notes = notes

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        # predict_on_batch runs a compiled graph (built once); calling the model eagerly is ~40x slower.
        return np.asarray(self.keras_model.predict_on_batch(batch))

    def _summary_extra(self) -> dict[str, Any]:
        total = int(self.keras_model.count_params())
        trainable = int(sum(int(np.prod(v.shape)) for v in self.keras_model.trainable_weights))
        return {
            "parameters": total,
            "parameters_trainable": trainable,
            "params_m": round(total / 1e6, 3),
            "params_diff_m": round(total / 1e6 - self.entry.params_m, 3),
            "keras_model": self.keras_model.name,
            "weights": self.weights,
            "used": list(self.used),
            "skipped": {reason: list(names) for reason, names in self.skipped.items()},
            "notes": list(self.notes),
        }

    def export(self, directory: Path) -> Path:
        """Write a TensorFlow SavedModel: signature ``serving_default``, images [N,H,W,3] -> probabilities."""
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            raise RestoreError(f"{self.entry.id}: export directory {directory} is not empty",
                               hint="choose a new or empty directory")
        tf = import_tensorflow()
        from keras.export import ExportArchive

        model, classes = self.keras_model, self.entry.num_classes
        h, w, c = self.entry.input_size

        def serve(images):
            probs = model(images, training=False)
            if probs.shape[-1] == classes - 1:  # a 1000-class head: add the background column (index 0)
                probs = tf.pad(probs, [[0, 0], [1, 0]])
            return {"probabilities": probs}

        # The same signature as every other format's export: `serving_default`, images -> probabilities,
        # any batch size.
        archive = ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serve,
                             input_signature=[tf.TensorSpec([None, h, w, c], tf.float32, name="images")])
        archive.write_out(str(directory), verbose=False)
        return directory


def restore_checkpoint(entry: Entry, checkpoint_prefix: Path, *, weights: str | None = None,
                       strict: bool = True) -> CheckpointModel:
    """Build the Keras model for ``entry`` and fill it from a slim checkpoint.

    ``checkpoint_prefix``: the prefix (``x.ckpt`` for ``x.ckpt.index`` + data), one of those
    files, or a directory holding one checkpoint (v3: the model directory with ``ema/`` and
    ``pristine/``). ``weights``: ``"ema"``, ``"raw"`` or None for upstream's choice per
    family (see the module docstring).
    """
    explicit = weights is not None
    weights = weights if explicit else DEFAULT_WEIGHTS.get(entry.family, "ema")
    if weights not in WEIGHT_SETS:
        raise RestoreError(f"{entry.id}: unknown weights {weights!r}",
                           hint="use weights='ema' (moving averages) or weights='raw'")
    tf = import_tensorflow()
    prefix, folder_set = _resolve_prefix(entry, Path(checkpoint_prefix), weights)
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as exc:  # DataLossError, NotFoundError...: unreadable or truncated files
        raise RestoreError(f"{entry.id}: cannot read checkpoint {prefix}: {exc}".strip(),
                           hint=f"run `mobilenet-zoo verify --repair {spec_for_path(entry, prefix)}`") from None
    shapes = {name: tuple(int(d) for d in shape)
              for name, shape in reader.get_variable_to_shape_map().items()}

    model = build_keras_model(entry)
    bindings = bindings_for(entry, model)
    sources, weights, notes = _choose_sources(entry, prefix, bindings, shapes, weights, explicit,
                                              folder_set, strict)
    bound = {b.slim_name for b in bindings}
    spare = [n for n in shapes if n not in bound and extra_reason(n) is None and not is_ema_shadow(n)]
    arrays = [_checked_array(entry, prefix, b, src, shapes, reader, spare)
              for b, src in zip(bindings, sources)]
    for binding, array in zip(bindings, arrays):  # only once every weight has passed its check
        binding.variable.assign(array)

    skipped = _sort_leftovers(entry, prefix, shapes, bindings, set(sources), strict)
    if entry.quantized or "fake_quant_range" in skipped:
        notes.append(_QUANTIZED_NOTE)
    return CheckpointModel(entry, prefix, model, weights=weights, used=sources, skipped=skipped,
                           notes=notes)


# ----------------------------------------------------------------------------- files
def _resolve_prefix(entry: Entry, path: Path, weights: str) -> tuple[Path, str | None]:
    """The checkpoint prefix to read, and for v3 tarballs which value set its folder holds."""
    name = path.name
    for suffix in (".index", ".meta"):
        if name.endswith(suffix):
            path = path.with_name(name[: -len(suffix)])
    if ".data-" in path.name:
        path = path.with_name(path.name.split(".data-")[0])
    if path.is_dir():
        if (path / "ema").is_dir() or (path / "pristine").is_dir():
            path = path / _V3_FOLDERS[weights]
            if not path.is_dir():
                raise RestoreError(f"{entry.id}: weights={weights!r} needs {path}, which does not exist",
                                   hint=f"the model directory holds: {_listing(path.parent)}")
        path = _latest_in(entry, path)
    elif "*" in path.name:
        path = _latest_in(entry, path.parent, path.name)
    if not Path(str(path) + ".index").is_file():
        raise RestoreError(f"{entry.id}: no checkpoint at {path} ({path.name}.index is missing)",
                           hint="pass the checkpoint prefix, e.g. .../mobilenet_v1_1.0_224.ckpt")

    folder = path.parent.name
    if folder not in _V3_FOLDERS.values():
        return path, None
    wanted = _V3_FOLDERS[weights]
    if folder != wanted:
        sibling = path.parent.parent / wanted
        if not sibling.is_dir():
            raise RestoreError(f"{entry.id}: weights={weights!r} reads the {wanted}/ checkpoint, "
                               f"but {sibling} does not exist",
                               hint=f"use weights={'raw' if weights == 'ema' else 'ema'!r}")
        path = _latest_in(entry, sibling)
    return path, weights


def _latest_in(entry: Entry, folder: Path, pattern: str = "*") -> Path:
    """The checkpoint in ``folder`` with the highest step number."""
    prefixes = [p.with_name(p.name[: -len(".index")]) for p in folder.glob(pattern + ".index")]
    if not prefixes:
        raise RestoreError(f"{entry.id}: no checkpoint ({pattern}.index) in {folder}",
                           hint="pass the checkpoint prefix itself")

    def step(p: Path) -> tuple[int, str]:
        match = re.search(r"-(\d+)$", p.name)
        return (int(match.group(1)) if match else -1, p.name)

    return max(prefixes, key=step)


def _listing(folder: Path) -> str:
    return ", ".join(sorted(p.name for p in folder.iterdir())) if folder.is_dir() else "nothing"


# ----------------------------------------------------------------------------- weight sets
def _choose_sources(entry: Entry, prefix: Path, bindings: list[Binding], shapes: dict[str, tuple],
                    weights: str, explicit: bool, folder_set: str | None,
                    strict: bool) -> tuple[list[str], str, list[str]]:
    """The checkpoint name to read for each binding, the weight set really used, and notes."""
    notes: list[str] = []
    use_shadows = False
    if folder_set is not None:  # v3 ema/ or pristine/: plain names hold the chosen set
        notes.append(f"read the {prefix.parent.name}/ checkpoint ({folder_set} values)")
    elif weights == "ema":
        use_shadows = any(is_ema_shadow(name) for name in shapes)
        if not use_shadows:
            if explicit:
                raise RestoreError(
                    f"{entry.id}: weights='ema' asked for, but {prefix} holds no "
                    f"{EMA_SUFFIX.lstrip('/')} variables",
                    hint="use weights='raw' for this checkpoint")
            notes.append("the checkpoint holds no moving averages: its plain variables were loaded")
            weights = "raw"
    sources = [_source_for(b, shapes, use_shadows) for b in bindings]
    if use_shadows:
        lacking = [b.slim_name for b, src in zip(bindings, sources)
                   if src == b.slim_name and b.variable.trainable and b.slim_name in shapes]
        if lacking and strict:
            raise RestoreError(
                f"{entry.id}: checkpoint {prefix.name} has moving averages, but not for "
                f"{lacking[0]!r} (no {shadow_of(lacking[0])!r}; {len(lacking)} weights lack one)",
                hint="strict=False loads their plain values instead; weights='raw' loads no averages")
        if lacking:
            notes.append(f"{len(lacking)} weights had no moving average; their plain values were loaded")
    return sources, weights, notes


# ----------------------------------------------------------------------------- checks
def _source_for(binding: Binding, shapes: dict[str, tuple], use_shadows: bool) -> str:
    """Shadow for trainable weights when averages are asked for; plain name otherwise."""
    shadow = shadow_of(binding.slim_name)
    if use_shadows and binding.variable.trainable and shadow in shapes:
        return shadow
    return binding.slim_name


def _checked_array(entry: Entry, prefix: Path, binding: Binding, source: str,
                   shapes: dict[str, tuple], reader: Any, spare: list[str]) -> np.ndarray:
    """The checkpoint array for one Keras weight, or a RestoreError naming the variable.

    ``spare``: checkpoint names no Keras weight asks for, offered as likely renames.
    """
    if source not in shapes:
        close = difflib.get_close_matches(binding.slim_name, spare, n=3, cutoff=0.6)
        raise RestoreError(
            f"{entry.id}: checkpoint {prefix.name} has no variable {source!r} "
            f"(Keras layer {binding.layer!r}, expected shape {list(binding.slim_shape)})",
            hint=("closest names in the checkpoint: " + ", ".join(close)) if close else
            "is this checkpoint for the same family, variant and width as the catalog entry?")
    found = shapes[source]
    if found != binding.slim_shape:
        raise RestoreError(
            f"{entry.id}: checkpoint variable {source!r} has shape {list(found)}, "
            f"expected {list(binding.slim_shape)} (Keras layer {binding.layer!r})",
            hint="the checkpoint was built with another width or variant than "
                 f"{entry.id} (width {entry.width}, variant {entry.variant})")
    return binding.to_keras(np.asarray(reader.get_tensor(source), dtype=np.float32))


def _sort_leftovers(entry: Entry, prefix: Path, shapes: dict[str, tuple], bindings: list[Binding],
                    used: set[str], strict: bool) -> dict[str, list[str]]:
    """Every checkpoint variable not loaded, grouped by why; unknown model variables fail."""
    bound = {b.slim_name for b in bindings}
    scope = SCOPE[entry.family] + "/"
    skipped: dict[str, list[str]] = defaultdict(list)
    for name in sorted(shapes):
        if name in used:
            continue
        reason = extra_reason(name)
        if reason is None:
            if is_ema_shadow(name):
                reason = "ema_shadow"
            elif name in bound:
                reason = "raw_value"  # the moving average was loaded instead
            elif not name.startswith(scope):
                reason = "outside_model_scope"
            elif strict:
                raise RestoreError(
                    f"{entry.id}: checkpoint variable {name!r} (shape {list(shapes[name])}) "
                    f"has no place in the Keras {entry.id} architecture",
                    hint="the checkpoint may be another variant; strict=False skips such variables")
            else:
                reason = "not_in_model"
        skipped[reason].append(name)
    return dict(skipped)
