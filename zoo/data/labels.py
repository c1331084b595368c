"""The ImageNet class names in the order of the TF-slim models (1001, background first).

Shipped in ``zoo/data/imagenet_labels.txt`` (origin in ``zoo/data/SOURCES.md``) and read
once, on first use.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from ..errors import ZooError

LABELS_FILE = "imagenet_labels.txt"
BACKGROUND = 0


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """All 1001 labels; index 0 is ``background``, 1..1000 the ILSVRC-2012 classes."""
    try:
        text = (resources.files("zoo.data") / LABELS_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise ZooError(f"the packaged label list {LABELS_FILE} is missing: {exc}",
                       hint="reinstall mobilenet-zoo") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != 1001:
        raise ZooError(f"{LABELS_FILE} has {len(labels)} labels, expected 1001", hint="reinstall mobilenet-zoo")
    return labels


def label(index: int, num_classes: int = 1001) -> str:
    """The class name for an output index of a model with ``num_classes`` outputs."""
    labels = imagenet_labels()
    offset = 1 if num_classes == 1000 else 0  # 1000-class heads have no background slot
    position = index + offset
    if not 0 <= position < len(labels):
        raise IndexError(f"class index {index} out of range for {num_classes} classes")
    return labels[position]


def short(name: str) -> str:
    """The first synonym: ``'tabby, tabby cat'`` -> ``'tabby'``."""
    return name.split(",")[0].strip()
