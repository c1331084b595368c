"""mobilenet-zoo: find, fetch, verify and run every published TensorFlow MobileNet.

    import zoo
    catalog = zoo.load_catalog()
    entry = catalog.pick(max_macs=300, quantized=True).chosen
    path = zoo.fetch(entry.id)                 # verified, unpacked cache entry
    model = zoo.restore(entry.id, format="tflite")

Importing this package is cheap: heavy parts (requests, TensorFlow, LiteRT) load only
when a function that needs them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .catalog.registry import Catalog, Entry, Release, load_catalog
from .errors import ZooError
from .notices import TrustOnFirstUseWarning, ZooWarning

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these load on first use
    from .run.benchmark import bench
    from .run.classification import classify
    from .run.evaluation import evaluate
    from .fetching.fetcher import fetch
    from .formats.resolve import restore

__version__ = "0.1.0"
__all__ = ["Catalog", "Entry", "Release", "ZooError", "ZooWarning", "TrustOnFirstUseWarning", "load_catalog",
           "fetch", "restore", "classify", "bench", "evaluate", "finetune", "export_model"]

_LAZY = {
    "fetch": ("zoo.fetching.fetcher", "fetch"),
    "restore": ("zoo.formats.resolve", "restore"),
    "classify": ("zoo.run.classification", "classify"),
    "bench": ("zoo.run.benchmark", "bench"),
    "evaluate": ("zoo.run.evaluation", "evaluate"),
    "finetune": ("zoo.training.finetuning", "finetune"),
    "export_model": ("zoo.training.export", "export_model"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the lazily loaded functions too, so `dir(zoo)` and tab completion find them."""
    return sorted(set(__all__) | {"__version__"})
