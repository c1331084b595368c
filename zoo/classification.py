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


def top_k(probs: np.ndarray, k: int) -> list[dict[str, Any]]:
    """The k best classes of one probability vector, best first (ties: lower index first)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": label(int(i)), "index": int(i), "score": float(probs[i])} for i in order]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def expand_image_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a directory becomes the image files directly inside it, sorted by name."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"no image files in {path}",
                                 hint=f"looked for {', '.join(IMAGE_SUFFIXES)} directly inside it")
            out.extend(found)
        else:
            out.append(path)
    return out


def classify(name_or_model: str | Path | Entry | RestoredModel, images: Sequence[str | Path], top: int = 5,
             format: str = "tflite", crop: float = DEFAULT_CROP, catalog: Catalog | None = None,
             cache_dir: Path | None = None, threads: int | None = None,
             skip_errors: bool = False) -> list[dict[str, Any]]:
    """Classify ``images`` (paths) and return ``[{"image", "predictions": [{"label","index","score"}]}]``.

    ``name_or_model`` is a catalog name, an Entry, an already restored model, or the
    path of a local upstream .tflite / _frozen.pb file. With ``skip_errors`` an image that
    cannot be read becomes ``{"image", "error"}`` in its place instead of failing the call.
    """
    if skip_errors:
        return _classify_skipping(name_or_model, images, top=top, format=format, crop=crop, catalog=catalog,
                                  cache_dir=cache_dir, threads=threads)
    fmt = normalize_format(format)
    paths = [Path(p) for p in images]
    if catalog is None and not isinstance(name_or_model, (RestoredModel, Entry)):
        from .catalog import load_catalog

        catalog = load_catalog()  # once, for both the look-up and the restore
    # Find the entry without restoring anything, so bad images fail before a download.
    entry = name_or_model.entry if isinstance(name_or_model, RestoredModel) else \
        locate(name_or_model, fmt, catalog)[0]
    if not 1 <= top <= entry.num_classes:
        raise UsageError(f"top must be between 1 and {entry.num_classes}, got {top}", params=("top",))
    batch = load_images(paths, entry.input_size, crop)
    model = name_or_model if isinstance(name_or_model, RestoredModel) else \
        restore_any(name_or_model, fmt, catalog=catalog, cache_dir=cache_dir, threads=threads)
    probs = model(batch)
    return [{"image": str(path), "predictions": top_k(row, top)} for path, row in zip(paths, probs)]


def _classify_skipping(name_or_model, images, **kwargs) -> list[dict[str, Any]]:
    """``classify`` on the readable images; unreadable ones are reported in place, in order."""
    from .catalog import load_catalog
    from .images import load_image

    fmt = normalize_format(kwargs["format"])
    catalog = kwargs.get("catalog")
    if catalog is None and not isinstance(name_or_model, (RestoredModel, Entry)):
        catalog = kwargs["catalog"] = load_catalog()
    entry = name_or_model.entry if isinstance(name_or_model, RestoredModel) else \
        locate(name_or_model, fmt, catalog)[0]
    good, errors = [], {}
    for path in images:
        try:
            load_image(path, entry.input_size, kwargs["crop"])
            good.append(path)
        except UsageError as exc:  # unreadable, missing, not an image
            errors[str(path)] = exc.message
    results = iter(classify(name_or_model, good, **kwargs) if good else [])
    return [{"image": str(p), "error": errors[str(p)]} if str(p) in errors else next(results) for p in images]
