"""A fine-tuned model directory (what `finetune` writes) as a model every command accepts.

    OUT/
        model.keras         the Keras model (float input in [-1, 1] -> class probabilities)
        saved_model/        the same as a SavedModel (``serving_default``: images -> probabilities)
        model.tflite        float TFLite
        model_int8.tflite   full-integer TFLite (with --quantize int8)
        labels.txt          one class name per line, in output order
        finetune.json       base model, classes, preprocessing, metrics, the exact command

``locate_finetuned`` is the one place the model resolver (``formats.resolve.locate``) learns
about such directories: ``OUT`` itself, or either ``.tflite`` (or the ``.keras``) inside
it, becomes a derived catalog ``Entry`` whose ``labels`` are the new classes, so
`classify`, `restore`, `bench` and `eval` need nothing else. Everything read here is
checked: a directory without a readable ``finetune.json`` is not a fine-tuned model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog.registry import Entry, Release
from ..errors import RestoreError, UsageError
from .base import RestoredModel

if TYPE_CHECKING:
    from .resolve import ModelRef

MANIFEST = "finetune.json"
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "model.tflite"
INT8_TFLITE_FILE = "model_int8.tflite"
LABELS_FILE = "labels.txt"
MANIFEST_KIND = "mobilenet-zoo/finetuned-model"


def is_finetuned_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(directory: Path) -> dict[str, Any]:
    """``finetune.json`` of ``directory``, checked enough to build an entry from it."""
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RestoreError(f"cannot read {path}: {exc}",
                           hint="the directory is damaged; run `mobilenet-zoo finetune` again") from None
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND \
            or not isinstance(data.get("base"), dict) or not isinstance(data.get("classes"), list):
        raise RestoreError(f"{path} is not a mobilenet-zoo fine-tuning manifest",
                           hint="pass a directory written by `mobilenet-zoo finetune --out`")
    return data


def read_labels(directory: Path, expected: int | None = None) -> tuple[str, ...]:
    path = Path(directory) / LABELS_FILE
    try:
        labels = tuple(line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n") if line.strip())
    except OSError as exc:
        raise RestoreError(f"cannot read {path}: {exc}", hint="the fine-tuned model directory is incomplete") from None
    if expected is not None and len(labels) != expected:
        raise RestoreError(f"{path} has {len(labels)} labels, finetune.json lists {expected} classes",
                           hint="the fine-tuned model directory is damaged; run `finetune` again")
    return labels


def entry_from_dict(data: dict[str, Any], source: str = MANIFEST) -> Entry:
    """An ``Entry`` back from ``Entry.to_dict()`` (as stored in finetune.json or an export's card)."""
    fields = {f.name for f in dataclasses.fields(Entry)}
    raw = {k: v for k, v in data.items() if k in fields}
    try:
        raw["releases"] = tuple(Release(r["release"], r["url"], r.get("sha256"), r.get("size_bytes"))
                                for r in raw.get("releases") or [])
        raw["input_size"] = tuple(int(v) for v in raw["input_size"])
        raw["input_range"] = tuple(float(v) for v in raw["input_range"])
        raw["aliases"] = tuple(raw.get("aliases") or ())
        if raw.get("labels") is not None:
            raw["labels"] = tuple(raw["labels"])
        return Entry(**raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise RestoreError(f"the base model record in {source} is incomplete: {exc}",
                           hint="run `mobilenet-zoo finetune` again") from None


def derived_entry(base: Entry, name: str, classes: tuple[str, ...]) -> Entry:
    """The catalog-shaped entry of a model fine-tuned from ``base`` to ``classes``."""
    return dataclasses.replace(
        base, id=name, quantized=False, top1=None, top5=None, num_classes=len(classes), labels=tuple(classes),
        files={"checkpoint": KERAS_FILE, "tflite": TFLITE_FILE, "int8_tflite": INT8_TFLITE_FILE},
        aliases=(), releases=tuple(dataclasses.replace(r, sha256=None, size_bytes=None) for r in base.releases),
        latency_ms={}, input_quantization=None,
        input_node="", output_node="", archive_root="")


def entry_for_dir(directory: Path) -> tuple[Entry, Entry]:
    """(the fine-tuned model's entry, with its own classes; the published entry it started from)."""
    directory = Path(directory)
    data = read_manifest(directory)
    base = entry_from_dict(data["base"])
    classes = tuple(str(c) for c in data["classes"])
    labels = read_labels(directory, expected=len(classes))
    if labels != classes:
        raise RestoreError(f"{directory / LABELS_FILE} does not match the classes in {MANIFEST}",
                           hint="the fine-tuned model directory was edited; run `finetune` again")
    return derived_entry(base, directory.resolve().name, classes), base


def locate_finetuned(path: Path, fmt: str | None) -> "ModelRef | None":
    """The model if ``path`` is a fine-tuned OUT or a model file in one, else None.

    ``OUT`` with format tflite (or None) -> ``model.tflite``; ckpt -> ``model.keras``; a
    ``.tflite`` / ``.keras`` file inside OUT keeps its own format (an explicit other one is an error).
    """
    from .resolve import ModelRef

    path = Path(path)
    if is_finetuned_dir(path):
        if fmt == "frozen":
            raise UsageError(f"{path} is a fine-tuned model: it has no frozen graph",
                             hint="use format tflite (model.tflite) or ckpt (model.keras)")
        fmt = fmt or "tflite"
        name = TFLITE_FILE if fmt == "tflite" else KERAS_FILE
        target = path / name
        if not target.is_file():
            raise RestoreError(f"{path} has no {name}", hint="the fine-tuned model directory is incomplete")
        entry, base = entry_for_dir(path)
        return ModelRef(entry, fmt, "finetuned", path=target, base_entry=base)
    if path.is_file() and path.suffix in (".tflite", ".keras") and is_finetuned_dir(path.parent):
        own = "tflite" if path.suffix == ".tflite" else "ckpt"
        if fmt is not None and fmt != own:
            raise UsageError(f"{path} is a {own} file, not {fmt}",
                             hint=f"ask for the {own} format, or leave the format out (the file decides)")
        entry, base = entry_for_dir(path.parent)
        return ModelRef(entry, own, "finetuned", path=path, base_entry=base)
    return None


class KerasFileModel(RestoredModel):
    """A fine-tuned ``model.keras`` behind the common interface (format ``ckpt``)."""

    format = "ckpt"

    def __init__(self, entry: Entry, source: Path, keras_model: Any):
        super().__init__(entry, source)
        self.keras_model = keras_model

    def _predict(self, batch):
        import numpy as np

        return np.asarray(self.keras_model.predict_on_batch(batch))

    def _summary_extra(self) -> dict[str, Any]:
        import numpy as np

        trainable = int(sum(int(np.prod(v.shape)) for v in self.keras_model.trainable_weights))
        return {"catalog_params_m": None, "output": f"probabilities over {self.entry.num_classes} classes ({LABELS_FILE})",
                "parameters": int(self.keras_model.count_params()), "parameters_trainable": trainable,
                "keras_model": self.keras_model.name, "labels": list(self.entry.labels or ())}

    def export(self, directory: Path) -> Path:
        from .saved_model import check_export_dir, write_saved_model

        return write_saved_model(self.keras_model, check_export_dir(self.entry.id, directory),
                                 num_classes=self.entry.num_classes)


def load_keras_file(entry: Entry, path: Path) -> KerasFileModel:
    from .keras_models import import_keras

    from .fake_quant import register_layers

    keras = import_keras()
    register_layers()  # a quantization-aware fine-tuned model holds them
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad archive
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RestoreError(f"{entry.id}: cannot load {path}: {first}",
                           hint="the file may be damaged; run `mobilenet-zoo finetune` again") from None
    return KerasFileModel(entry, Path(path), model)
