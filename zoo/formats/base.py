"""One interface for every restored model.

Whatever the file format, a restored model is a callable
``model(images float32 [N, H, W, 3] in [-1, 1]) -> float32 [N, classes]`` of class
probabilities, so `classify`, `eval`, `bench` and the tests never care which runtime
answers. It carries what it needs to be used correctly: its classes (``labels``: the 1001
ImageNet labels, index 0 = background, or a fine-tuned model's own) and how images must
be prepared for it (``preprocessing``). Loaders live in ``frozen``, ``tflite``, ``ckpt``
and ``finetuned``; ``resolve`` finds the model and picks the loader.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog.registry import Entry
from ..errors import RestoreError, UsageError
from .kinds import CONVERTED_FORMATS, FORMAT_ALIASES, FORMATS



class RestoredModel(ABC):
    """A model ready to run. Subclasses implement ``_predict`` on a checked batch."""

    format: str = "?"
    runtime: str = "tensorflow"  # the engine that answers (``kinds.RUNTIMES``)

    def __init__(self, entry: Entry, source: Path):
        self.entry = entry
        self.source = Path(source)

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(height, width, channels) the model expects."""
        return tuple(self.entry.input_size)  # type: ignore[return-value]

    @property
    def labels(self) -> tuple[str, ...]:
        """The name of each output class, in output order: a fine-tuned model's own classes,
        else the 1001 ImageNet labels (index 0 = background)."""
        if self.entry.labels is not None:
            return tuple(self.entry.labels)
        from ..data.labels import imagenet_labels

        names = imagenet_labels()
        return names[1:] if self.entry.num_classes == len(names) - 1 else names

    @property
    def preprocessing(self) -> dict[str, Any]:
        """How images must be prepared for this model (TF-slim's eval preprocessing, its input size)."""
        return self.entry.preprocessing

    def __call__(self, images: Any) -> np.ndarray:
        batch = check_images(images, self.input_size, self.entry.id)
        if batch.shape[0] == 0:
            return np.zeros((0, self.entry.num_classes), np.float32)
        probs = np.asarray(self._predict(batch), dtype=np.float32).reshape(batch.shape[0], -1)
        return align_classes(probs, self.entry)

    @abstractmethod
    def _predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N,H,W,3] in [-1,1] -> probabilities [N, classes]."""

    def summary(self) -> dict[str, Any]:
        """What `restore` prints: shapes, ranges, parameter count against the catalog."""
        h, w, c = self.input_size
        info: dict[str, Any] = {
            "id": self.entry.id,
            "format": self.format,
            "runtime": self.runtime,
            "source": str(self.source),
            "input_shape": [None, h, w, c],
            "input_range": list(self.entry.input_range),
            "output_shape": [None, self.entry.num_classes],
            "output": "probabilities (softmax), index 0 = background",
            "parameters": None,
            "catalog_params_m": self.entry.params_m,
        }
        info.update(self._summary_extra())
        return info

    def _summary_extra(self) -> dict[str, Any]:
        return {}

    def export(self, directory: Path) -> Path:
        """Write the model in a portable form under ``directory``; returns what was written."""
        raise RestoreError(f"{self.entry.id}: export is not supported for the {self.format} format",
                           hint="export works with the formats ckpt (SavedModel), frozen and tflite")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.entry.id} ({self.format}) from {self.source}>"


def run_in_chunks(batch: np.ndarray, step: int | None, invoke: Any) -> np.ndarray:
    """``invoke`` on ``step`` images at a time (a fixed-batch file), the last chunk padded;
    ``step`` None (a dynamic batch): on the whole batch at once."""
    if step is None:
        return invoke(batch)
    outputs = []
    for start in range(0, batch.shape[0], step):
        chunk = batch[start:start + step]
        n = chunk.shape[0]
        if n < step:
            chunk = np.concatenate([chunk, np.zeros((step - n,) + chunk.shape[1:], chunk.dtype)])
        outputs.append(invoke(chunk)[:n])
    return np.concatenate(outputs)


def check_input_shape(entry: Entry, path: Path, shape: list[int], runtime: str) -> None:
    """The file's input is one [N, H, W, 3] image batch of the catalog's size."""
    h, w, c = entry.input_size
    if len(shape) != 4 or list(shape[1:]) != [h, w, c]:
        raise RestoreError(f"{entry.id}: {path} takes input of shape {list(shape)} in {runtime}, the catalog "
                           f"says [N, {h}, {w}, {c}]", hint="is this the right file for this model?")


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of rows whose best class is the same in both probability arrays (an export or
    another runtime against the model it stands in for)."""
    return float(100.0 * np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def check_images(images: Any, size: tuple[int, int, int], model_id: str) -> np.ndarray:
    """A float32 [N,H,W,3] batch, or a UsageError that says what shape was expected."""
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(size):
        raise UsageError(f"{model_id}: expected images of shape [N, {size[0]}, {size[1]}, {size[2]}], "
                         f"got {list(batch.shape)}",
                         hint="zoo.data.images.load_images(paths, model.input_size) prepares them")
    return batch


def align_classes(probs: np.ndarray, entry: Entry) -> np.ndarray:
    """Give 1000-class outputs the background column the 1001-label list expects."""
    if probs.shape[1] == entry.num_classes:
        return probs
    if probs.shape[1] == 1000 and entry.num_classes == 1001:
        return np.concatenate([np.zeros((probs.shape[0], 1), np.float32), probs], axis=1)
    raise RestoreError(f"{entry.id}: the model answers {probs.shape[1]} classes, the catalog says "
                       f"{entry.num_classes}", hint="check the catalog entry's num_classes")


def normalize_format(fmt: str) -> str:
    key = (fmt or "").strip().lower()
    key = FORMAT_ALIASES.get(key, key)
    if key not in FORMATS + CONVERTED_FORMATS:
        raise UsageError(f"unknown model format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
    return key


def configure_tf_threads(threads: int | None) -> bool:
    """Set TensorFlow's intra/inter-op thread pools; True if the request is in force.

    TensorFlow reads these once, when its runtime starts: after the first op has run
    in this process they can no longer change, and the request is then ignored.
    Frozen graphs do not depend on this (they get a session with its own pools).
    """
    if threads is None:
        return True
    from .._util.runtime_logs import import_tensorflow

    tf = import_tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        return True
    except RuntimeError:
        return tf.config.threading.get_intra_op_parallelism_threads() == threads
