"""Top-k ImageNet predictions for photos, with any model and format.

Images are decoded and checked before the model is restored, so a typo in a file
name fails in a second instead of after a download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .catalog import Catalog, Entry
from .errors import UsageError
from .images import DEFAULT_CROP, load_images
from .labels import label
from .formats.base import RestoredModel, locate, normalize_format, restore_any


def top_k(probs: np.ndarray, k: int, labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The k best classes of one probability vector, best first (ties: lower index first).

    ``labels``: a model's own class names (fine-tuned models); None for ImageNet's.
    """
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": labels[int(i)] if labels is not None else label(int(i)), "index": int(i),
             "score": float(probs[i])} for i in order]


def classify(name_or_model: str | Path | Entry | RestoredModel, images: Sequence[str | Path], top: int = 5,
             format: str = "tflite", crop: float = DEFAULT_CROP, catalog: Catalog | None = None,
             cache_dir: Path | None = None, threads: int | None = None) -> list[dict[str, Any]]:
    """Classify ``images`` (paths) and return ``[{"image", "predictions": [{"label","index","score"}]}]``.

    ``name_or_model`` is a catalog name, an Entry, an already restored model, or the
    path of a local upstream .tflite / _frozen.pb file.
    """
    fmt = normalize_format(format)
    paths = [Path(p) for p in images]
    if catalog is None and not isinstance(name_or_model, (RestoredModel, Entry)):
        from .catalog import load_catalog

        catalog = load_catalog()  # once, for both the look-up and the restore
    # Find the entry without restoring anything, so bad images fail before a download.
    entry = name_or_model.entry if isinstance(name_or_model, RestoredModel) else \
        locate(name_or_model, fmt, catalog)[0]
    if not 1 <= top <= entry.num_classes:
        raise UsageError(f"--top must be between 1 and {entry.num_classes}, got {top}")
    batch = load_images(paths, entry.input_size, crop)
    model = name_or_model if isinstance(name_or_model, RestoredModel) else \
        restore_any(name_or_model, fmt, catalog=catalog, cache_dir=cache_dir, threads=threads)
    probs = model(batch)
    labels = model.entry.labels
    return [{"image": str(path), "predictions": top_k(row, top, labels)} for path, row in zip(paths, probs)]
