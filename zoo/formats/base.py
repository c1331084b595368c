"""One interface for every restored model, and the dispatcher that picks the loader.

Whatever the file format, a restored model is a callable
``model(images float32 [N, H, W, 3] in [-1, 1]) -> float32 [N, 1001]`` of class
probabilities (index 0 = background), so `classify`, `bench` and the tests never care
which runtime answers. Loaders live in ``frozen``, ``tflite`` and ``ckpt`` and are
imported only when asked for: restoring a .tflite file never imports TensorFlow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, overload

import numpy as np

from ..catalog.registry import Catalog, Entry
from ..errors import RestoreError, UsageError

if TYPE_CHECKING:
    from .ckpt import CheckpointModel
    from .frozen import FrozenGraphModel
    from .tflite import TFLiteModel

FORMATS = ("ckpt", "frozen", "tflite")
ROLE_OF_FORMAT = {"ckpt": "checkpoint", "frozen": "frozen_graph", "tflite": "tflite"}
_FORMAT_ALIASES = {"checkpoint": "ckpt", "pb": "frozen", "frozen_graph": "frozen", "lite": "tflite"}


class RestoredModel(ABC):
    """A model ready to run. Subclasses implement ``_predict`` on a checked batch."""

    format: str = "?"

    def __init__(self, entry: Entry, source: Path):
        self.entry = entry
        self.source = Path(source)

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(height, width, channels) the model expects."""
        return tuple(self.entry.input_size)  # type: ignore[return-value]

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
        raise RestoreError(f"{self.entry.id}: --export is not supported for the {self.format} format",
                           hint="export works with --format ckpt (SavedModel), frozen and tflite")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.entry.id} ({self.format}) from {self.source}>"


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
    key = _FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
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


_OPTIONS = {"tflite": {"threads"}, "frozen": {"threads"}, "ckpt": {"threads", "weights", "strict"}}


def _check_options(fmt: str, options: Mapping[str, Any]) -> None:
    """Refuse options the format cannot use, before any file is looked up or fetched."""
    allowed = _OPTIONS[fmt]
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        raise UsageError(f"option {', '.join(unknown)} does not apply to the {fmt} format",
                         hint=f"{fmt} accepts: {', '.join(sorted(allowed)) or 'no options'}")


def restore_file(entry: Entry, path: Path, fmt: str, **options: Any) -> RestoredModel:
    """Internal (the public entry point is :func:`restore`): load one file (a checkpoint prefix
    for ckpt) as ``entry`` with the loader for ``fmt``, with no look-up and no fetch.

    Options: ``threads`` (all formats; for ckpt it sets TensorFlow's global pools, see
    ``configure_tf_threads``), ``weights`` ('ema'|'raw') and ``strict`` (ckpt only).
    """
    fmt = normalize_format(fmt)
    _check_options(fmt, options)
    if fmt == "tflite":
        from .tflite import load_tflite

        return load_tflite(entry, Path(path), threads=options.get("threads"))
    if fmt == "frozen":
        from .frozen import load_frozen_graph

        return load_frozen_graph(entry, Path(path), threads=options.get("threads"))
    if Path(path).suffix == ".keras":  # a fine-tuned model (zoo.formats.finetuned)
        from .finetuned import load_keras_file

        if options.get("weights") is not None:
            raise UsageError("--weights applies to slim checkpoints, not to a fine-tuned model.keras")
        _require_tensorflow("loading Keras models")
        configure_tf_threads(options.get("threads"))
        return load_keras_file(entry, Path(path))
    from .ckpt import restore_checkpoint

    _require_tensorflow("restoring checkpoints")
    configure_tf_threads(options.get("threads"))
    kwargs = {k: options[k] for k in ("weights", "strict") if options.get(k) is not None}
    return restore_checkpoint(entry, Path(path), **kwargs)


def restore_from_dir(entry: Entry, model_dir: Path, fmt: str, **options: Any) -> RestoredModel:
    """Internal (public: ``restore(directory, entry=...)``): restore ``entry`` from an unpacked
    model directory (``<entry_dir>/model``) without fetching."""
    from ..fetching.layout import find_file, spec_for_path

    fmt = normalize_format(fmt)
    _check_options(fmt, options)
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise RestoreError(f"{entry.id}: model directory {model_dir} does not exist",
                           hint=f"run `mobilenet-zoo fetch {spec_for_path(entry, model_dir)}` first")
    return restore_file(entry, find_file(entry, model_dir, ROLE_OF_FORMAT[fmt]), fmt, **options)


def resolve_entry(name: str | Entry, catalog: Catalog | None = None) -> Entry:
    if isinstance(name, Entry):
        return name
    if catalog is None:
        from ..catalog.registry import load_catalog

        catalog = load_catalog()
    return catalog.get(name)


def _restore_cached(name: str | Entry, format: str = "tflite", *, catalog: Catalog | None = None,
                    cache_dir: Path | None = None, **options: Any) -> RestoredModel:
    """Fetch (or reuse from the cache) and restore a catalog model."""
    fmt = normalize_format(format)
    _check_options(fmt, options)
    if catalog is None and isinstance(name, str):
        from ..catalog.registry import load_catalog

        catalog = load_catalog()
    entry = resolve_entry(name, catalog)
    from ..fetching.fetcher import fetch

    # A name keeps its `@release` suffix; an Entry means its default release.
    entry_dir = Path(fetch(name if isinstance(name, str) else entry.id, catalog=catalog, cache_dir=cache_dir))
    from ..fetching.layout import MODEL_DIR

    return restore_from_dir(entry, entry_dir / MODEL_DIR, fmt, **options)


def _require_tensorflow(feature: str) -> None:
    from .._util.runtime_logs import import_tensorflow

    try:
        import_tensorflow()
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("tensorflow", feature) from None


def format_of_file(path: Path) -> str | None:
    """The format a local file's name implies (.tflite or .pb), or None."""
    name = Path(path).name
    if name.endswith(".tflite"):
        return "tflite"
    if name.endswith(".pb"):
        return "frozen"
    return None


def entry_for_file(path: Path, catalog: Catalog, fmt: str) -> Entry:
    """The catalog entry whose expected file for ``fmt`` has this file's name.

    Lets `classify path/to/mobilenet_v1_0.25_128_quant.tflite cat.jpg` work on files
    that never went through the cache (only upstream file names can be recognised).
    """
    import fnmatch

    name = Path(path).name
    role = ROLE_OF_FORMAT[fmt]
    for entry in catalog:
        pattern = entry.files.get(role)
        if pattern and "*" not in Path(pattern).name and fnmatch.fnmatch(name, Path(pattern).name):
            return entry
    stem = name.rsplit(".", 1)[0].removesuffix("_frozen")
    if stem in catalog:  # upstream names are catalog aliases: mobilenet_v2_1.0_224_quant
        return catalog.get(stem)
    raise UsageError(f"cannot tell which catalog model the file {path} is",
                     hint="keep the upstream file name (e.g. mobilenet_v1_0.25_128_quant.tflite) "
                          "or fetch the model and pass its id")


def locate(model: str | Path | Entry, format: str = "tflite",
           catalog: Catalog | None = None) -> tuple[Entry, Path | None, str]:
    """(entry, local file or None, format) for a catalog name, an Entry, a local upstream file,
    or a fine-tuned model directory (or a .tflite / .keras file in one).

    Nothing is loaded or fetched, so callers can check their other inputs first.
    """
    fmt = normalize_format(format)
    if isinstance(model, Entry):
        return model, None, fmt
    path = Path(model)
    from .finetuned import locate_finetuned

    finetuned = locate_finetuned(path, fmt)
    if finetuned is not None:
        return finetuned
    if path.is_file():
        fmt = format_of_file(path) or fmt
        return entry_for_file(path, catalog if catalog is not None else _default_catalog(), fmt), path, fmt
    if isinstance(model, Path) or format_of_file(path):
        raise UsageError(f"model file not found: {model}",
                         hint="pass an existing .tflite / _frozen.pb file, or a model id from `mobilenet-zoo list`")
    return resolve_entry(str(model), catalog), None, fmt


def restore_any(model: str | Path | Entry, format: str = "tflite", *, catalog: Catalog | None = None,
                cache_dir: Path | None = None, **options: Any) -> RestoredModel:
    """Internal, for `classify`, `bench` and `evaluate`: like :func:`restore` on a catalog name, an
    Entry or a local upstream file, where a file's own format wins over ``format``."""
    entry, path, fmt = locate(model, format, catalog)
    if path is not None:
        return restore_file(entry, path, fmt, **options)
    return _restore_cached(str(model) if isinstance(model, Path) else model, fmt, catalog=catalog,
                           cache_dir=cache_dir, **options)


Weights = Literal["ema", "ema-trainable", "raw"]


@overload
def restore(model: str | Path | Entry, format: Literal["tflite", "lite"], *, catalog: Catalog | None = None,
            cache_dir: str | Path | None = None, threads: int | None = None,
            entry: str | Entry | None = None) -> TFLiteModel: ...


@overload
def restore(model: str | Path | Entry, format: Literal["frozen", "pb", "frozen_graph"], *,
            catalog: Catalog | None = None, cache_dir: str | Path | None = None, threads: int | None = None,
            entry: str | Entry | None = None) -> FrozenGraphModel: ...


@overload
def restore(model: str | Path | Entry, format: Literal["ckpt", "checkpoint"], *, catalog: Catalog | None = None,
            cache_dir: str | Path | None = None, threads: int | None = None, weights: Weights | None = None,
            strict: bool | None = None, entry: str | Entry | None = None) -> CheckpointModel: ...


@overload
def restore(model: str | Path | Entry, format: str | None = None, *, catalog: Catalog | None = None,
            cache_dir: str | Path | None = None, threads: int | None = None, weights: Weights | None = None,
            strict: bool | None = None, entry: str | Entry | None = None) -> RestoredModel: ...


def restore(model: str | Path | Entry, format: str | None = None, *, catalog: Catalog | None = None,
            cache_dir: str | Path | None = None, threads: int | None = None, weights: Weights | None = None,
            strict: bool | None = None, entry: str | Entry | None = None) -> RestoredModel:
    """Restore a model as a callable ``model(images [N,H,W,3] in [-1,1]) -> probabilities [N,1001]``.

    ``model`` is what the CLI's `restore` takes: a catalog name (fetched into the cache
    first if needed; ``name@release`` picks a release), an Entry, a local upstream
    ``.tflite`` / ``_frozen.pb`` file, or a directory of unpacked model files (a cache
    entry, its ``model/`` folder, or an extracted tarball). ``entry`` (an id or Entry) says
    which model a local file or directory holds when the file names do not tell.

    ``format``: ``"tflite"`` -> :class:`~zoo.formats.tflite.TFLiteModel` (LiteRT),
    ``"frozen"`` -> :class:`~zoo.formats.frozen.FrozenGraphModel` (a TF graph),
    ``"ckpt"`` -> :class:`~zoo.formats.ckpt.CheckpointModel` (Keras; its ``keras_model``
    attribute is the ``keras.Model`` to fine-tune or inspect). None: the file's own format,
    else tflite. ``threads``: CPU threads of the runtime. ``weights`` ("ema", "ema-trainable",
    "raw") and ``strict`` apply to checkpoints only.
    """
    options = {"threads": threads, "weights": weights, "strict": strict}
    fmt = normalize_format(format) if format is not None else None
    _check_options(fmt or "tflite", options)
    local = Path(model) if isinstance(model, (str, Path)) else None
    from .finetuned import is_finetuned_dir

    if local is not None and local.is_dir() and not is_finetuned_dir(local):  # (a finetune OUT: see locate)
        return _restore_directory(local, fmt or "tflite", entry, catalog, options)
    local_file = local if local is not None and local.is_file() else None
    own = format_of_file(local_file) if local_file is not None else None
    if fmt is not None and own is not None and own != fmt:
        raise UsageError(f"{model} is a {own} file, not {fmt}",
                         hint=f"ask for the {own} format, or leave the format out (the file's name decides)")
    if entry is not None:
        if local_file is None:
            raise UsageError("entry= names the model of a local file or directory only",
                             hint="pass the catalog name as the model instead")
        return restore_file(resolve_entry(entry, catalog), local_file, fmt or own or "tflite", **options)
    return restore_any(model, fmt or "tflite", catalog=catalog,
                       cache_dir=Path(cache_dir) if cache_dir is not None else None, **options)


def _restore_directory(directory: Path, fmt: str, entry: str | Entry | None, catalog: Catalog | None,
                       options: Mapping[str, Any]) -> RestoredModel:
    """A cache entry (``<id>/<release>``), its ``model/`` folder, or an extracted tarball."""
    from ..fetching.manifest import read_manifest
    from ..fetching.layout import MODEL_DIR

    if catalog is None:
        catalog = _default_catalog()
    if (directory / MODEL_DIR).is_dir() and read_manifest(directory) is not None:
        directory = directory / MODEL_DIR  # the entry directory `zoo.fetch` returns
    if entry is None:
        manifest = read_manifest(directory.parent) if directory.name == MODEL_DIR else None
        entry = manifest.model_id if manifest is not None else _entry_of_files(directory, catalog)
    return restore_from_dir(resolve_entry(entry, catalog), directory, fmt, **options)


def _entry_of_files(directory: Path, catalog: Catalog) -> Entry:
    """The catalog entry whose upstream file names are in ``directory``."""
    for path in sorted(directory.iterdir()):
        own = format_of_file(path)
        if own is not None and path.is_file():
            try:
                return entry_for_file(path, catalog, own)
            except UsageError:
                continue
    raise UsageError(f"cannot tell which catalog model the directory {directory} holds",
                     hint="keep the upstream file names, or pass entry='<model id>' "
                          "(e.g. restore(directory, entry='v1_1.0_224'))")


def _default_catalog() -> Catalog:
    from ..catalog.registry import load_catalog

    return load_catalog()
