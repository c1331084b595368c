"""Restore a published TF-slim MobileNet checkpoint into a Keras model (format ``ckpt``).

    model = restore_checkpoint(entry, Path(".../mobilenet_v2_1.0_224.ckpt"))
    probs = model(images)          # float32 [N,H,W,3] in [-1,1] -> [N,1001] softmax
    model.summary()["skipped"]     # what was left out of the checkpoint, and why

How it works: ``keras_models`` builds the matching ``keras.applications`` architecture
(EdgeTPU: our own, ``keras_edgetpu``),
``slim_names`` pairs each Keras weight with its slim variable name and shape, and this
module reads the checkpoint with ``tf.train.load_checkpoint`` (no slim code, no TF1
graph), checks *every* weight before assigning *any*, and reports the rest.

Which weights (``weights=``). Published checkpoints are training snapshots holding, next
to each model variable, its ``<var>/ExponentialMovingAverage`` shadow, batch-norm
``moving_mean``/``moving_variance`` included. Three ways to read them:

* ``"ema"``: the shadow of every model variable that has one, BN statistics included.
  This is what upstream's own evaluation restores: ``research/slim/train_image_classifier.py``
  averages ``slim.get_model_variables()`` (BN statistics are model variables) and
  ``eval_image_classifier.py`` restores ``ExponentialMovingAverage.variables_to_restore(
  slim.get_model_variables())``, i.e. the averages of all of them; the TF1-to-TF2 loaders
  in ``research/mobilenet/tf1_loader`` (``v1_loader``, ``v2_loader``, ``v3_loader`` via
  ``utils.generate_layer_weights_map``) keep, per variable, the longest name, i.e. the
  ``moving_mean/ExponentialMovingAverage`` shadow when it exists, and v1 included.
* ``"ema-trainable"``: shadows for trainable weights only, plain BN statistics: what
  ``research/slim/nets/mobilenet/mobilenet_example.ipynb`` gets from
  ``variables_to_restore()`` in a fresh graph (its moving-average collection is empty there).
* ``"raw"``: the plain variables (what ``mobilenet_v1_eval.py`` restores; but
  ``mobilenet_v1_train.py``, plain SGD without averages, did not make the published v1
  checkpoints, which hold averages, RMSProp slots and ``global_step``).

Default (``weights=None``): stop guessing where the tarball allows it. Every v1/v2 tarball
(and v3/EdgeTPU) ships a frozen graph made from the same training run; when it is next to the
checkpoint, each set is run on the same random inputs as the graph and the one that
reproduces it (max probability difference <= ``MATCH_ATOL``) is used, and ``notes`` say so.
When none does (a ``RestoreWarning``), or there is no graph (or a quantized one, whose
fake-quant ops no float model reproduces), the family default applies: ``"ema"`` for every
family, following ``eval_image_classifier.py`` and the tf1 loaders above. v3 tarballs keep
the two sets in ``ema/`` and ``pristine/`` checkpoints (averaged and raw values under plain
names): ``"ema"`` reads ``ema/``, ``"raw"`` reads ``pristine/``.

Always skipped (and listed in ``summary()["skipped"]`` by reason): ``global_step``,
``optimizer_slot`` / ``optimizer_state``, the set not chosen (``ema_shadow`` or
``raw_value``), the ranges' ``moving_average_slot`` state, and anything
``outside_model_scope`` (e.g. loss averages). A quantized (``_quant``) v1 or v2 checkpoint's ranges
are read by ``fake_quant``, which rebuilds the fake-quant network around the restored weights;
with ``fake_quant=False`` (and for v3 / EdgeTPU, whose fake-quant points are unknown) they are skipped as
``fake_quant_range`` and the model is a *float* one, the ``.tflite`` being the quantized form. With ``strict=True`` (default) a
variable inside the model's scope that fits no Keras weight is an error; with
``strict=False`` it is skipped as ``not_in_model``; likewise a weight without a moving
average in a checkpoint that has them is an error, or (``strict=False``) loaded from its
plain value with a note. A missing variable or a shape mismatch is always an error,
never a partial load.

``export(dir)`` writes a TensorFlow SavedModel with the one signature every export has
(``zoo.formats.saved_model``), which TF Serving, the TFLite converter and ``tf.saved_model.load`` read.
"""

from __future__ import annotations

import difflib
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog.registry import Entry
from ..fetching.layout import spec_for_path
from ..errors import RestoreError
from .base import RestoredModel
from .keras_models import build_keras_model, import_tensorflow
from .kinds import WEIGHT_SETS
from .slim_names import SCOPE, Binding, bindings_for
from .slim_variables import EMA_SUFFIX, extra_reason, is_ema_shadow, shadow_of

DEFAULT_WEIGHTS = {"v1": "ema", "v2": "ema", "v3": "ema", "edgetpu": "ema"}
_V3_FOLDERS = {"ema": "ema", "raw": "pristine"}
MATCH_ATOL = 1e-4  # max |probability difference| for "the same weights" (float32 noise is ~1e-5)
MATCH_INPUTS = 2
_QUANTIZED_NOTE = ("quantized checkpoint restored as a float model (fake-quant ranges skipped); "
                   "the .tflite file is the deployable quantized form")
_UNSUPPORTED_NOTE = ("fake-quant restore is implemented for v1 and v2 ({family}'s fake-quant points are not known "
                     "from any public source): restored as a float model; the .tflite file is the deployable "
                     "quantized form")


class CheckpointModel(RestoredModel):
    """A Keras model holding a slim checkpoint's weights, behind the common interface.

    Attributes: ``keras_model`` is the ``keras.Model`` itself (MobileNet architecture from
    ``keras.applications``, weights filled in; outputs softmax probabilities) to fine-tune,
    inspect or save: ``zoo.restore(name, "ckpt").keras_model``. ``weights`` says which set was
    read ("ema", "ema-trainable" or "raw"); ``used`` / ``skipped`` list the checkpoint variables.
    ``quantization_points``: the slim layers whose weights and outputs are fake-quantized
    (empty for a float model).
    """

    format = "ckpt"

    def __init__(self, entry: Entry, source: Path, keras_model: Any, *, weights: str,
                 used: list[str], skipped: dict[str, list[str]], notes: list[str],
                 quantization_points: tuple[str, ...] = ()):
        super().__init__(entry, source)
        self.quantization_points = quantization_points
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
            "fake_quant": bool(self.quantization_points),
            "quantization_points": list(self.quantization_points),
        }

    def export(self, directory: Path) -> Path:
        """Write a TensorFlow SavedModel: signature ``serving_default``, images [N,H,W,3] -> probabilities."""
        from .saved_model import check_export_dir, write_saved_model

        return write_saved_model(self.keras_model, check_export_dir(self.entry.id, directory),
                                 num_classes=self.entry.num_classes)


@dataclass
class _WeightSet:
    """One way of reading a checkpoint: where from, which name per Keras weight, the arrays."""

    weights: str
    prefix: Path
    sources: list[str]
    arrays: list[np.ndarray]
    notes: list[str]
    shapes: dict[str, tuple]


def restore_checkpoint(entry: Entry, checkpoint_prefix: Path, *, weights: str | None = None,
                       strict: bool = True, reference: Path | bool | None = None,
                       fake_quant: bool | None = None) -> CheckpointModel:
    """Build the Keras model for ``entry`` and fill it from a slim checkpoint.

    ``checkpoint_prefix``: the prefix (``x.ckpt`` for ``x.ckpt.index`` + data), one of those
    files, or a directory holding checkpoints (the highest step is taken; v3: the model
    directory with ``ema/`` and ``pristine/``). ``weights``: ``"ema"``, ``"ema-trainable"``,
    ``"raw"`` or None. With None, when the tarball's frozen graph is there (``reference``:
    its path, None to look next to the checkpoint, False not to), every weight set is
    compared with it and the one that computes the same function is used; otherwise, and
    when none matches (a warning), the family's default (see the module docstring).
    ``fake_quant``: for a quantized (``_quant``) model, None or True rebuild the fake-quant
    network the checkpoint was trained as (``zoo.formats.fake_quant``); False gives the float model.
    """
    explicit = weights is not None
    weights = weights if explicit else DEFAULT_WEIGHTS.get(entry.family, "ema")
    if weights not in WEIGHT_SETS:
        raise RestoreError(f"{entry.id}: unknown weights {weights!r}",
                           hint="use weights='ema' (all moving averages), 'ema-trainable' (averages of "
                                "trainable weights, plain batch-norm statistics) or 'raw'")
    if fake_quant is True and not entry.quantized:
        raise RestoreError(f"{entry.id} is a float model: it has no fake-quant ranges",
                           hint=f"use its quantized sibling ({entry.id}_quant) or leave fake_quant unset")
    quantize = fake_quant is not False and carries_fake_quant(entry)
    tf = import_tensorflow()
    model = build_keras_model(entry)
    bindings = bindings_for(entry, model)
    chosen = _read_set(tf, entry, Path(checkpoint_prefix), bindings, weights, explicit, strict)
    notes = list(chosen.notes)
    if not explicit and reference is not False:
        frozen = reference if isinstance(reference, Path) else find_reference_graph(entry, chosen.prefix, quantize)
        if frozen is not None:
            chosen, verdict = _match_reference(tf, entry, model, Path(checkpoint_prefix), bindings, strict,
                                               chosen, Path(frozen), quantize)
            notes = list(chosen.notes) + [verdict]
    for binding, array in zip(bindings, chosen.arrays):  # only once every weight has passed its check
        binding.variable.assign(array)

    used = list(chosen.sources)
    points: tuple[str, ...] = ()
    if quantize:
        model, points, range_names = _with_fake_quant(tf, entry, chosen, model, bindings)
        used += range_names
        notes.append(f"fake-quant ranges applied at {len(points)} points (weights after the batch-norm fold, "
                     f"outputs after ReLU6 / the logits): {', '.join(points)}")
    skipped = _sort_leftovers(entry, chosen.prefix, chosen.shapes, bindings, set(used), strict)
    if not points and (entry.quantized or "fake_quant_range" in skipped):
        unsupported = entry.quantized and fake_quant is not False
        notes.append(_UNSUPPORTED_NOTE.format(family=entry.family) if unsupported else _QUANTIZED_NOTE)
    return CheckpointModel(entry, chosen.prefix, model, weights=chosen.weights, used=used,
                           skipped=skipped, notes=notes, quantization_points=points)


def fake_quant_families() -> tuple[str, ...]:
    from .fake_quant import SUPPORTED_FAMILIES

    return SUPPORTED_FAMILIES


def carries_fake_quant(entry: Entry) -> bool:
    """Whether this model's checkpoint restores (by default) as a fake-quant network."""
    return entry.quantized and entry.family in fake_quant_families()


def _with_fake_quant(tf: Any, entry: Entry, chosen: _WeightSet, model: Any,
                     bindings: list[Binding]) -> tuple[Any, tuple[str, ...], list[str]]:
    """The fake-quant network over the restored float weights; the ranges follow the weight set
    (a range's moving-average shadow when the set reads shadows and the checkpoint has one)."""
    from .fake_quant import fake_quant_network, quant_plan, quantization_points, read_ranges

    reader = tf.train.load_checkpoint(str(chosen.prefix))
    use_shadows = any(src != b.slim_name for b, src in zip(bindings, chosen.sources))
    read_names: list[str] = []

    def read(name: str) -> np.ndarray:
        source = shadow_of(name) if use_shadows and shadow_of(name) in chosen.shapes else name
        read_names.append(source)
        return reader.get_tensor(source)

    uses = quant_plan(entry, model, bindings)
    ranges = read_ranges(entry, chosen.prefix, uses, chosen.shapes, read)
    return fake_quant_network(model, uses, ranges), quantization_points(uses), read_names


def _read_set(tf: Any, entry: Entry, path: Path, bindings: list[Binding], weights: str, explicit: bool,
              strict: bool) -> _WeightSet:
    """Read and check every array of one weight set (nothing is assigned here)."""
    prefix, folder_set = _resolve_prefix(entry, path, weights)
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as exc:  # DataLossError, NotFoundError...: unreadable or truncated files
        raise RestoreError(f"{entry.id}: cannot read checkpoint {prefix}: {exc}".strip(),
                           hint=f"run `mobilenet-zoo verify --repair {spec_for_path(entry, prefix)}`") from None
    shapes = {name: tuple(int(d) for d in shape)
              for name, shape in reader.get_variable_to_shape_map().items()}
    sources, used, notes = _choose_sources(entry, prefix, bindings, shapes, weights, explicit,
                                           folder_set, strict)
    bound = {b.slim_name for b in bindings}
    spare = [n for n in shapes if n not in bound and extra_reason(n) is None and not is_ema_shadow(n)]
    arrays = [_checked_array(entry, prefix, b, src, shapes, reader, spare)
              for b, src in zip(bindings, sources)]
    return _WeightSet(used, prefix, sources, arrays, notes, shapes)


# ----------------------------------------------------------------------------- the frozen graph decides
def find_reference_graph(entry: Entry, prefix: Path, fake_quant: bool = False) -> Path | None:
    """The tarball's frozen graph next to a checkpoint (same training run), if it is there.

    A quantized tarball's graph carries fake-quant ops: only a fake-quant restore
    (``fake_quant``) can reproduce it, so for a float restore it is left out.
    """
    pattern = entry.files.get("frozen_graph")
    if not pattern or (entry.quantized and not fake_quant):
        return None
    name = Path(pattern).name
    for folder in (prefix.parent, prefix.parent.parent):  # v1/v2/EdgeTPU: beside it; v3: above ema/
        found = sorted(folder.glob(name)) if folder.is_dir() else []
        if found:
            return found[-1]
    return None


def _match_reference(tf: Any, entry: Entry, model: Any, path: Path, bindings: list[Binding], strict: bool,
                     default: _WeightSet, frozen: Path, fake_quant: bool = False) -> tuple[_WeightSet, str]:
    """Run each weight set and the frozen graph on the same random inputs; keep the set that agrees.

    ``fake_quant``: each set runs as its fake-quant network (its own ranges), as the graph does."""
    from .frozen import load_frozen_graph

    try:
        graph = load_frozen_graph(entry, frozen)
    except RestoreError as exc:
        return default, f"could not compare with the frozen graph ({exc.message}); used {default.weights}"
    h, w, c = entry.input_size
    images = np.random.default_rng(0).uniform(-1, 1, (MATCH_INPUTS, h, w, c)).astype(np.float32)
    try:
        expected = graph(images)
    finally:
        graph.close()
    candidates = [default]
    for weights in WEIGHT_SETS:
        if weights == default.weights:
            continue
        try:
            candidates.append(_read_set(tf, entry, path, bindings, weights, True, strict))
        except RestoreError:  # this checkpoint has no such set (no shadows, no pristine/ ...)
            continue
    distances = {}
    for candidate in candidates:
        for binding, array in zip(bindings, candidate.arrays):
            binding.variable.assign(array)
        runner = _with_fake_quant(tf, entry, candidate, model, bindings)[0] if fake_quant else model
        got = np.asarray(runner.predict_on_batch(images), dtype=np.float32).reshape(len(images), -1)
        distances[candidate.weights] = float(np.abs(got - expected).max()) if got.shape == expected.shape \
            else float("inf")
    best = min(candidates, key=lambda c: distances[c.weights])
    report = ", ".join(f"{k} {v:.1g}" for k, v in distances.items())
    if distances[best.weights] <= MATCH_ATOL:
        return best, (f"weights {best.weights}: the set that reproduces {frozen.name} "
                      f"(max probability difference per set: {report})")
    message = (f"{entry.id}: no weight set of the checkpoint reproduces {frozen.name} "
               f"(max probability difference per set: {report}); using {default.weights}, upstream's default")
    warnings.warn(message, RestoreWarning, stacklevel=3)
    return default, message


class RestoreWarning(UserWarning):
    """The checkpoint and its tarball's frozen graph disagree: which weights are right is unknown."""


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
            path = path / _v3_folder(entry, weights)
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
    wanted = _v3_folder(entry, weights)
    if folder != wanted:
        sibling = path.parent.parent / wanted
        if not sibling.is_dir():
            raise RestoreError(f"{entry.id}: weights={weights!r} reads the {wanted}/ checkpoint, "
                               f"but {sibling} does not exist",
                               hint=f"use weights={'raw' if weights == 'ema' else 'ema'!r}")
        path = _latest_in(entry, sibling)
    return path, weights


def _v3_folder(entry: Entry, weights: str) -> str:
    if weights not in _V3_FOLDERS:
        raise RestoreError(f"{entry.id}: weights={weights!r} does not apply to ema/ + pristine/ checkpoints",
                           hint="their ema/ folder holds every averaged value: use weights='ema' or 'raw'")
    return _V3_FOLDERS[weights]


def _latest_in(entry: Entry, folder: Path, pattern: str = "*") -> Path:
    """The checkpoint in ``folder`` with the highest step number."""
    from ..fetching.roles import checkpoint_prefixes

    prefixes = checkpoint_prefixes(folder, pattern)
    if not prefixes:
        raise RestoreError(f"{entry.id}: no checkpoint ({pattern}.index) in {folder}",
                           hint="pass the checkpoint prefix itself")
    return prefixes[-1]


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
    elif weights != "raw":
        use_shadows = any(is_ema_shadow(name) for name in shapes)
        if not use_shadows:
            if explicit:
                raise RestoreError(
                    f"{entry.id}: weights={weights!r} asked for, but {prefix} holds no "
                    f"{EMA_SUFFIX.lstrip('/')} variables",
                    hint="use weights='raw' for this checkpoint")
            notes.append("the checkpoint holds no moving averages: its plain variables were loaded")
            weights = "raw"
    statistics = weights == "ema"  # averages of the batch-norm statistics too, when saved
    sources = [_source_for(b, shapes, use_shadows, statistics) for b in bindings]
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
        if statistics and not any(src != b.slim_name for b, src in zip(bindings, sources)
                                  if not b.variable.trainable):
            notes.append("the batch-norm statistics have no moving averages: their plain values were loaded")
    return sources, weights, notes


# ----------------------------------------------------------------------------- checks
def _source_for(binding: Binding, shapes: dict[str, tuple], use_shadows: bool, statistics: bool) -> str:
    """The shadow when averages are asked for (of batch-norm statistics only with ``statistics``)."""
    shadow = shadow_of(binding.slim_name)
    if use_shadows and (binding.variable.trainable or statistics) and shadow in shapes:
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
