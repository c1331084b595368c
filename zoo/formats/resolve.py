"""The one way from what a user names to a model.

Every command and API function that takes a model (`restore`, `classify`, `eval`, `bench`,
`export`, `finetune`) calls :func:`locate`, then loads what it found:

    ref = locate("v1_0.25_128_quant")        # finds it; loads nothing, fetches nothing
    model = ref.load(threads=1)              # fetches into the cache if needed, then restores
    model.labels, model.preprocessing        # its own classes and how to prepare images

What ``locate`` accepts, the same everywhere (checked in this order):

1. an ``Entry``, or a catalog name: any alias, with or without ``@release``;
2. a `finetune` OUT folder (it has ``finetune.json``), or a model file inside one
   (``model.tflite``, ``model_int8.tflite``, ``model.keras``);
3. a cache entry (``<cache>/<id>/<release>``, what ``zoo.fetch`` returns) or its ``model/``
   folder, or a folder holding an unpacked upstream tarball;
4. a local file: ``.tflite``, ``.pb`` (a frozen graph), or a checkpoint given by its prefix
   (``x.ckpt``) or one of its files (``x.ckpt.index``, ``.data-*``, ``.meta``).

Which catalog model a local file or folder holds comes from, in order: ``entry=``, the cache
manifest, the card beside a file `export` wrote (``zoo.formats.card``), the upstream file names
or the model id as a file name, or the folder's name (upstream's archive root). ``format``
None means the file's own format (a folder or a catalog model: the first of
``DEFAULT_FORMAT_ORDER`` its tarball has); an explicit format that
contradicts the file is an error, never a silent switch. Nothing here imports TensorFlow:
each loader imports its runtime when it runs.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, overload

from ..catalog.registry import Catalog, Entry, catalog_or_default
from ..errors import RestoreError, UsageError
from .base import RestoredModel, configure_tf_threads, normalize_format
from .kinds import (CONVERTED_FORMATS, DEFAULT_FORMAT_ORDER, DEFAULT_RUNTIME, FORMATS, ROLE_OF_FORMAT, RUNTIME_FORMATS,
                    RUNTIMES)

if TYPE_CHECKING:
    from .ckpt import CheckpointModel
    from .frozen import FrozenGraphModel
    from .tflite import TFLiteModel

#: How the model was named: what ``ModelRef.kind`` says.
KINDS = ("catalog", "finetuned", "folder", "file")
_CHECKPOINT_SUFFIXES = (".index", ".meta")

# Options each format's loader takes (None values are ignored, so callers may pass them all).
# ``runtime`` picks the engine (``kinds.RUNTIME_FORMATS`` says which runs what); ``openvino_device``
# and ``precision`` are OpenVINO's. ``streams``: how many copies the caller will run side by side
# (eval); OpenVINO compiles once for that many, the other runtimes copy themselves.
_RUNTIME_OPTIONS = {"threads", "runtime", "openvino_device", "precision", "streams"}
_OPTIONS = {"tflite": _RUNTIME_OPTIONS, "frozen": _RUNTIME_OPTIONS, "ckpt": _RUNTIME_OPTIONS | {"weights", "strict", "fake_quant"},
            "onnx": _RUNTIME_OPTIONS, "openvino": _RUNTIME_OPTIONS}


@dataclass(frozen=True)
class ModelRef:
    """A model found and not yet loaded: which entry, which format, and where its file is.

    ``path``: the file to load (a checkpoint prefix for ckpt); None for a catalog model
    (fetched on :meth:`file`) or a model folder (searched on :meth:`file`). ``folder``: the
    model folder to search. ``spec``: the catalog name to fetch (``id@release``).
    ``base_entry``: the published model it comes from (a fine-tuned model's base).
    """

    entry: Entry
    format: str
    kind: str
    path: Path | None = None
    folder: Path | None = None
    spec: str | None = None
    base_entry: Entry | None = None
    catalog: Catalog | None = field(default=None, repr=False, compare=False)  # where ``spec`` is fetched from

    @property
    def labels(self) -> tuple[str, ...] | None:
        """A fine-tuned model's own class names; None: the ImageNet labels."""
        return self.entry.labels

    @property
    def is_local(self) -> bool:
        """True when loading needs no fetch."""
        return self.kind != "catalog"

    def file(self, cache_dir: Path | None = None) -> Path:
        """The file this format loads from, fetching the model into the cache first if needed."""
        if self.path is not None:
            return self.path
        folder = self.folder
        if folder is None:
            from ..fetching.fetcher import fetch
            from ..fetching.layout import MODEL_DIR

            folder = Path(fetch(self.spec or self.entry.id, catalog=self.catalog, cache_dir=cache_dir)) / MODEL_DIR
        elif not folder.is_dir():
            from ..fetching.layout import spec_for_path

            raise RestoreError(f"{self.entry.id}: model directory {folder} does not exist",
                               hint=f"run `mobilenet-zoo fetch {spec_for_path(self.entry, folder)}` first")
        from ..fetching.roles import find_file

        return find_file(self.entry, folder, ROLE_OF_FORMAT[self.format])

    def load(self, *, cache_dir: Path | None = None, **options: Any) -> RestoredModel:
        """Restore the model with its format's loader (see :func:`load_file` for the options)."""
        check_options(self.format, options)
        check_runtime(self.format, options.get("runtime"), options)  # before anything is fetched
        return load_file(self.entry, self.file(cache_dir), self.format, **options)


def check_options(fmt: str, options: Mapping[str, Any]) -> None:
    """Refuse options the format cannot use, before any file is looked up or fetched."""
    allowed = _OPTIONS[fmt]
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        raise UsageError(f"option {', '.join(unknown)} does not apply to the {fmt} format",
                         hint=f"{fmt} accepts: {', '.join(sorted(allowed)) or 'no options'}")


# ----------------------------------------------------------------------------- finding
def locate(model: str | Path | Entry, format: str | None = None, *, catalog: Catalog | None = None,
           entry: str | Entry | None = None) -> ModelRef:
    """Find ``model`` (see the module docstring) without loading or fetching anything.

    ``catalog``: where names are looked up (default: the configured catalog, loaded only if
    a name or a local file needs it). ``entry``: the catalog model a local file or folder
    holds, when its names do not tell.
    """
    fmt = normalize_format(format) if format is not None else None
    if isinstance(model, Entry):
        _refuse_entry_for_catalog(entry)
        return ModelRef(model, fmt or default_format(model), "catalog", spec=model.id, base_entry=model,
                        catalog=catalog)
    path = Path(model)
    from .finetuned import locate_finetuned

    finetuned = locate_finetuned(path, fmt)
    if finetuned is not None:
        _refuse_entry_for_finetuned(entry, path)
        return finetuned
    if path.is_dir():
        _refuse_converted(model, fmt)
        return _locate_folder(path, fmt, entry, catalog)
    own = format_of_file(path)
    if own is not None and _exists(path, own):
        if fmt is not None and fmt != own:
            raise UsageError(f"{model} is a {own} file, not {fmt}",
                             hint=f"ask for the {own} format, or leave the format out (the file decides)")
        base = None
        if entry is not None:
            found = _entry(entry, catalog)
        else:
            from .card import entries_from_card

            catalog = catalog_or_default(catalog)
            carded = entries_from_card(path, catalog)  # a file `export` wrote
            found, base = carded if carded is not None else (_entry_of_cached_file(path, catalog)
                                                             or entry_for_file(path, catalog, own), None)
        return ModelRef(found, own, "file", path=_checkpoint_prefix(path) if own == "ckpt" else path,
                        base_entry=base or found)
    if isinstance(model, Path) or own is not None or "/" in str(model):
        raise UsageError(f"model file not found: {model}",
                         hint="pass an existing .tflite / .pb file, a checkpoint prefix, a model folder, "
                              "or a model id from `mobilenet-zoo list`")
    _refuse_entry_for_catalog(entry)
    _refuse_converted(model, fmt)
    catalog = catalog_or_default(catalog)
    found = catalog.get(str(model))
    return ModelRef(found, fmt or default_format(found), "catalog", spec=str(model), base_entry=found,
                    catalog=catalog)


def _refuse_converted(model: object, fmt: str | None) -> None:
    """An .onnx or IR file is only ever a file (from `export`): a name or a folder has none."""
    if fmt in CONVERTED_FORMATS:
        raise UsageError(f"{model}: no tarball holds an {fmt} file; they come from a conversion",
                         hint=f"run its .tflite with --runtime {'onnxruntime' if fmt == 'onnx' else 'openvino'}, "
                              f"or write one with `mobilenet-zoo export {model} --to {fmt} --out PATH`")


def default_format(entry: Entry) -> str:
    """The format a catalog model loads in when none is asked for: the first of
    ``DEFAULT_FORMAT_ORDER`` its tarball holds (a model with a checkpoint only is restored from it)."""
    for fmt in DEFAULT_FORMAT_ORDER:
        if ROLE_OF_FORMAT[fmt] in entry.files:
            return fmt
    return DEFAULT_FORMAT_ORDER[0]  # nothing known: the error then names the files it does list


def format_of_file(path: Path) -> str | None:
    """The format a file's name implies: ``.tflite``, ``.pb``, a checkpoint's files (or prefix),
    and the converted ``.onnx`` and OpenVINO ``.xml``."""
    name = Path(path).name
    if name.endswith(".tflite"):
        return "tflite"
    if name.endswith(".pb"):
        return "frozen"
    if name.endswith(".keras"):
        return "ckpt"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(".xml"):  # OpenVINO IR (with its .bin)
        return "openvino"
    if name.endswith(_CHECKPOINT_SUFFIXES) or ".data-" in name or ".ckpt" in name:
        return "ckpt"
    return None


def _checkpoint_prefix(path: Path) -> Path:
    """``x.ckpt`` for ``x.ckpt``, ``x.ckpt.index``, ``x.ckpt.meta`` or ``x.ckpt.data-00000-of-00001``."""
    name = path.name
    if name.endswith(".keras"):
        return path
    for suffix in _CHECKPOINT_SUFFIXES:
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    if ".data-" in name:
        return path.with_name(name.split(".data-")[0])
    return path


def _exists(path: Path, fmt: str) -> bool:
    if fmt == "ckpt" and not path.name.endswith(".keras"):
        return Path(str(_checkpoint_prefix(path)) + ".index").is_file()
    return path.is_file()


def _locate_folder(folder: Path, fmt: str | None, entry: str | Entry | None,
                   catalog: Catalog | None) -> ModelRef:
    """A cache entry (``<id>/<release>``), its ``model/`` folder, or an unpacked tarball."""
    from ..fetching.layout import MODEL_DIR
    from ..fetching.manifest import read_manifest

    if (folder / MODEL_DIR).is_dir() and read_manifest(folder) is not None:
        folder = folder / MODEL_DIR  # the entry directory `zoo.fetch` returns
    if entry is not None:
        found = _entry(entry, catalog)
    else:
        manifest = read_manifest(folder.parent) if folder.name == MODEL_DIR else None
        found = (catalog_or_default(catalog).get(manifest.model_id) if manifest is not None
                 else _entry_of_folder(folder, catalog_or_default(catalog)))
    return ModelRef(found, fmt or default_format(found), "folder", folder=folder, base_entry=found)


def _entry_of_cached_file(path: Path, catalog: Catalog) -> Entry | None:
    """The entry whose cache folder holds ``path`` (``<cache>/<id>/<release>/model/...``), by its
    manifest: any file of a fetched tarball, e.g. one of EdgeTPU's three .tflite files."""
    from ..fetching.layout import MODEL_DIR
    from ..fetching.manifest import read_manifest

    for parent in Path(path).absolute().parents:
        if parent.name == MODEL_DIR:
            manifest = read_manifest(parent.parent)
            if manifest is not None and manifest.model_id in catalog:
                return catalog.get(manifest.model_id)
            return None
    return None


def _entry_of_folder(folder: Path, catalog: Catalog) -> Entry:
    """The catalog entry whose upstream file names are in ``folder``, or whose archive root it is."""
    for path in sorted(folder.iterdir()):
        own = format_of_file(path)
        if own is not None and own != "ckpt" and path.is_file():
            try:
                return entry_for_file(path, catalog, own)
            except UsageError:
                continue
    by_root = [e for e in catalog if e.archive_root not in ("", ".") and e.archive_root == folder.name]
    if len(by_root) == 1:
        return by_root[0]
    raise UsageError(f"cannot tell which catalog model the directory {folder} holds",
                     hint="keep the upstream file names, or name the model: restore(directory, entry='<model id>')")


def entry_for_file(path: Path, catalog: Catalog, fmt: str) -> Entry:
    """The catalog entry whose expected file for ``fmt`` has this file's name.

    Lets `classify path/to/mobilenet_v1_0.25_128_quant.tflite cat.jpg` work on files
    that never went through the cache (only upstream file names can be recognised).
    """
    prefix = _checkpoint_prefix(Path(path))
    name = prefix.name
    role = ROLE_OF_FORMAT.get(fmt)  # converted formats have no tarball file: only the id as a name
    in_folder = []  # patterns such as v2_224_100/model.ckpt-*: the folder names the model
    for candidate in catalog if role else ():
        pattern = candidate.files.get(role)
        if pattern and "*" not in Path(pattern).name and fnmatch.fnmatch(name, Path(pattern).name):
            return candidate
        depth = len(Path(pattern).parts) if pattern else 0
        if depth > 1 and fnmatch.fnmatch("/".join(prefix.absolute().parts[-depth:]), pattern):
            in_folder.append(candidate)
    if len(in_folder) == 1:
        return in_folder[0]
    stem = name.rsplit(".", 1)[0].removesuffix("_frozen").removesuffix(".ckpt")
    if stem in catalog:  # upstream names are catalog aliases: mobilenet_v2_1.0_224_quant
        return catalog.get(stem)
    raise UsageError(f"cannot tell which catalog model the file {path} is",
                     hint="keep the upstream file name (e.g. mobilenet_v1_0.25_128_quant.tflite) or name the "
                          "file after its model id (v1_0.25_128.tflite); files `export` writes say it themselves")


def _entry(entry: str | Entry, catalog: Catalog | None) -> Entry:
    return entry if isinstance(entry, Entry) else catalog_or_default(catalog).get(entry)


def _refuse_entry_for_catalog(entry: object) -> None:
    if entry is not None:
        raise UsageError("entry= names the model of a local file or directory only",
                         hint="pass the catalog name as the model instead")


def _refuse_entry_for_finetuned(entry: object, path: Path) -> None:
    if entry is not None:
        raise UsageError(f"{path} is a fine-tuned model: its finetune.json says what it is; leave entry= out")


# ----------------------------------------------------------------------------- loading
def load_file(entry: Entry, path: Path, fmt: str, **options: Any) -> RestoredModel:
    """Load one file (a checkpoint prefix for ckpt) as ``entry`` with the loader for ``fmt``:
    no look-up, no fetch. Internal: the public way in is :func:`restore`.

    Options: ``threads`` (all formats; for ckpt it sets TensorFlow's global pools, see
    ``configure_tf_threads``), ``weights`` ('ema'|'ema-trainable'|'raw') and ``strict`` (ckpt only).
    """
    fmt = normalize_format(fmt)
    check_options(fmt, options)
    path = Path(path)
    runtime = check_runtime(fmt, options.get("runtime"), options)
    if runtime == "onnxruntime":
        from .onnx_runtime import load_onnx, load_tflite_with_onnxruntime

        return (load_onnx if fmt == "onnx" else load_tflite_with_onnxruntime)(entry, path, threads=options.get("threads"))
    if runtime == "openvino":
        from .openvino_runtime import load_openvino

        return load_openvino(entry, path, threads=options.get("threads"), device=options.get("openvino_device"),
                             precision=options.get("precision"), streams=options.get("streams"))
    if fmt == "tflite":
        from .tflite import load_tflite

        return load_tflite(entry, path, threads=options.get("threads"))
    if fmt == "frozen":
        from .frozen import load_frozen_graph

        return load_frozen_graph(entry, path, threads=options.get("threads"))
    if path.suffix == ".keras":  # a fine-tuned model
        from .finetuned import load_keras_file

        if options.get("weights") is not None:
            raise UsageError("weights= applies to slim checkpoints, not to a fine-tuned model.keras",
                             params=("weights",))
        require_tensorflow("loading Keras models")
        configure_tf_threads(options.get("threads"))
        return load_keras_file(entry, path)
    from .ckpt import restore_checkpoint

    require_tensorflow("restoring checkpoints")
    configure_tf_threads(options.get("threads"))
    kwargs = {k: options[k] for k in ("weights", "strict", "fake_quant") if options.get(k) is not None}
    return restore_checkpoint(entry, path, **kwargs)


def check_runtime(fmt: str, runtime: str | None, options: Mapping[str, Any]) -> str:
    """The runtime that runs ``fmt`` (None: the format's own); a pairing no runtime offers is
    refused before anything is loaded, saying which runtimes run that file."""
    runtime = DEFAULT_RUNTIME[fmt] if runtime is None else runtime
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}", hint=f"use one of: {', '.join(RUNTIMES)}", params=("runtime",))
    if fmt not in RUNTIME_FORMATS[runtime]:
        able = [r for r in RUNTIMES if fmt in RUNTIME_FORMATS[r]]
        raise UsageError(f"runtime={runtime!r} does not run {fmt} files",
                         hint=f"{fmt} runs on {', '.join(able)}; {runtime} runs "
                              f"{', '.join(RUNTIME_FORMATS[runtime])} (e.g. --format tflite)", params=("runtime",))
    for option in ("openvino_device", "precision"):
        if options.get(option) is not None and runtime != "openvino":
            raise UsageError(f"{option} applies to runtime='openvino', not to {runtime}", params=(option, "runtime"))
    return runtime


# The internal name tests and benchmarks know.
restore_file = load_file


def require_tensorflow(feature: str) -> None:
    from .._util.runtime_logs import import_tensorflow

    try:
        import_tensorflow()
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("tensorflow", feature) from None


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
            strict: bool | None = None, entry: str | Entry | None = None,
            fake_quant: bool | None = None) -> CheckpointModel: ...


@overload
def restore(model: str | Path | Entry, format: str | None = None, *, catalog: Catalog | None = None,
            cache_dir: str | Path | None = None, threads: int | None = None, weights: Weights | None = None,
            strict: bool | None = None, entry: str | Entry | None = None, runtime: str | None = None,
            openvino_device: str | None = None, precision: str | None = None,
            fake_quant: bool | None = None) -> RestoredModel: ...


def restore(model: str | Path | Entry, format: str | None = None, *, catalog: Catalog | None = None,
            cache_dir: str | Path | None = None, threads: int | None = None, weights: Weights | None = None,
            strict: bool | None = None, entry: str | Entry | None = None, runtime: str | None = None,
            openvino_device: str | None = None, precision: str | None = None,
            fake_quant: bool | None = None) -> RestoredModel:
    """Restore a model as a callable ``model(images [N,H,W,3] in [-1,1]) -> probabilities [N, classes]``.

    ``model`` is anything :func:`locate` accepts: a catalog name (fetched into the cache first
    if needed; ``name@release`` picks a release), an Entry, a fine-tuned OUT (or a file in it),
    a cache entry or model folder, or a local ``.tflite`` / ``.pb`` / checkpoint. ``entry`` (an
    id or Entry) says which catalog model a local file or folder holds when its names do not tell.

    ``format``: ``"tflite"`` -> :class:`~zoo.formats.tflite.TFLiteModel` (LiteRT),
    ``"frozen"`` -> :class:`~zoo.formats.frozen.FrozenGraphModel` (a TF graph),
    ``"ckpt"`` -> :class:`~zoo.formats.ckpt.CheckpointModel` (Keras; its ``keras_model``
    attribute is the ``keras.Model`` to fine-tune or inspect). None: the file's own format,
    else the first of ``DEFAULT_FORMAT_ORDER`` the model has. ``threads``: CPU threads of the runtime. ``weights`` ("ema", "ema-trainable",
    "raw"), ``strict`` and ``fake_quant`` apply to checkpoints only: a ``_quant`` checkpoint
    restores as its fake-quant network unless ``fake_quant=False`` asks for the float model.

    ``runtime``: the engine, one of ``RUNTIMES`` (None: the format's own, LiteRT for .tflite,
    TensorFlow for the others): ``"onnxruntime"`` runs an .onnx file, or a .tflite converted with
    tf2onnx on the way in; ``"openvino"`` reads .tflite, .onnx and its IR .xml itself, on
    ``openvino_device`` (default ``"CPU"``) at ``precision`` (``"f32"`` unless ``"bf16"``/``"f16"`` is asked).
    Whatever the runtime, the result is the same callable.
    """
    options = {"threads": threads, "weights": weights, "strict": strict, "runtime": runtime,
               "openvino_device": openvino_device, "precision": precision, "fake_quant": fake_quant}
    check_options(normalize_format(format) if format is not None else "tflite", options)
    ref = locate(model, format, catalog=catalog, entry=entry)
    return ref.load(cache_dir=Path(cache_dir) if cache_dir is not None else None, **options)


def locate_weights(model: str | Path | Entry, *, catalog: Catalog | None = None,
                   entry: str | Entry | None = None, purpose: str = "trained") -> ModelRef:
    """``model`` as float weights one can train or convert (format ckpt): a catalog model's
    checkpoint, a local checkpoint, or a fine-tuned OUT's ``model.keras``.

    A ``.tflite`` or ``.pb`` holds inference-only (often quantized) weights: refused, naming it.
    """
    ref = locate(model, None, catalog=catalog, entry=entry)
    if ref.kind == "finetuned" and ref.path is not None and ref.path.parent == Path(model):
        return locate(model, "ckpt", catalog=catalog)  # OUT itself: its model.keras
    if ref.path is not None and ref.format != "ckpt":
        raise UsageError(f"{model} cannot be {purpose}: a .{'pb' if ref.format == 'frozen' else ref.format} "
                         "file holds inference-only (often quantized) weights",
                         hint="pass a catalog model id (its checkpoint is restored), a checkpoint, or a finetune OUT")
    return replace(ref, format="ckpt")


__all__ = ["FORMATS", "KINDS", "ModelRef", "locate", "locate_weights", "load_file", "restore", "format_of_file"]
