"""Each file format of the upstream tarballs (and of fine-tuned models), behind one interface.

    import zoo
    model = zoo.restore("v1_0.25_128_quant", format="tflite")   # zoo.formats.resolve.restore
    probs = model(images)            # float32 [N,H,W,3] in [-1,1] -> [N, classes]

``kinds`` names the formats (light: the CLI reads it at start-up); ``base`` is the interface every loader returns; ``resolve`` is the one way from what a user
names to a model (``locate`` finds it, ``ModelRef.load`` restores it); each format has its own
loader module (``tflite``, ``frozen``, ``ckpt``, ``finetuned``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .kinds import FORMATS

if TYPE_CHECKING:
    from .base import RestoredModel
    from .resolve import ModelRef, load_file, locate, restore, restore_file

__all__ = ["FORMATS", "ModelRef", "RestoredModel", "load_file", "locate", "restore", "restore_file"]
_LAZY = {"RestoredModel": "base", "ModelRef": "resolve", "locate": "resolve", "restore": "resolve",
         "load_file": "resolve", "restore_file": "resolve"}


def __getattr__(name: str) -> Any:
    """Load the interface and the resolver on first use: ``zoo.formats.kinds`` must stay light (no numpy)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
