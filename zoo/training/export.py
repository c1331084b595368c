"""Keras model -> SavedModel, float TFLite, full-integer TFLite; and the `export` command's logic.

    write_saved_model(keras_model, Path("out/saved_model"))
    write_tflite(Path("out/saved_model"), Path("out/model.tflite"))
    write_int8_tflite(Path("out/saved_model"), Path("out/model_int8.tflite"), calibration_batches)

Full-integer quantization is post-training quantization with a representative dataset,
as TensorFlow Lite documents it (``Optimize.DEFAULT`` + ``representative_dataset`` +
``TFLITE_BUILTINS_INT8`` only + integer ``inference_input_type``/``inference_output_type``):
every op, the input and the output are integers, so the file runs on integer-only
accelerators. The input's scale and zero point come from the calibration images, and
``zoo.formats.tflite`` reads them from the file, so callers keep feeding floats in [-1, 1].

``export_model`` (the `export` command) writes to a temporary name next to the target
and renames it into place, so a failed or interrupted export leaves nothing that looks done.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import RestoreError, UsageError

INT8_IO_TYPES = ("uint8", "int8")
DEFAULT_CALIBRATION_IMAGES = 200
TARGETS = ("tflite", "saved_model")


def write_saved_model(keras_model: Any, directory: Path) -> Path:
    keras_model.export(str(directory), format="tf_saved_model", verbose=False)
    return Path(directory)


def _converter(saved_model: Path) -> Any:
    from ..formats.keras_models import import_tensorflow

    tf = import_tensorflow()
    return tf, tf.lite.TFLiteConverter.from_saved_model(str(saved_model))


def write_tflite(saved_model: Path, path: Path) -> Path:
    """Float TFLite from a SavedModel."""
    _, converter = _converter(saved_model)
    Path(path).write_bytes(converter.convert())
    return Path(path)


def write_int8_tflite(saved_model: Path, path: Path, calibration: Callable[[], Iterable[np.ndarray]],
                      io_type: str = "uint8") -> Path:
    """Full-integer TFLite; ``calibration()`` yields float32 [1, H, W, 3] batches in [-1, 1]."""
    if io_type not in INT8_IO_TYPES:
        raise UsageError(f"unknown integer I/O type {io_type!r}", hint=f"use one of: {', '.join(INT8_IO_TYPES)}")
    tf, converter = _converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([batch] for batch in calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dtype = tf.uint8 if io_type == "uint8" else tf.int8
    converter.inference_input_type = dtype
    converter.inference_output_type = dtype
    from .._util.runtime_logs import native_stderr_hidden

    with native_stderr_hidden():  # the calibrator prints "fully_quantize: 0, inference_type: 6, ..." to fd 2
        flatbuffer = converter.convert()
    Path(path).write_bytes(flatbuffer)
    return Path(path)


# ----------------------------------------------------------------------------- images
def calibration_files(directory: Path, limit: int = DEFAULT_CALIBRATION_IMAGES) -> list[str]:
    """Up to ``limit`` readable images under ``directory`` (any depth), evenly spread, stable order."""
    from .inputs import IMAGE_SUFFIXES, _readable

    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"calibration={directory}: no such directory",
                         hint="pass a folder of representative images (class folders or flat)",
                         params=("calibration",))
    files = sorted(str(p) for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    if not files:
        raise UsageError(f"calibration={directory} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                         hint="pass a folder of a few hundred images like the ones the model will see",
                         params=("calibration",))
    return [f for f in spread(files, limit) if _readable(Path(f))] or _no_readable(directory)


def _no_readable(directory: Path) -> list[str]:
    raise UsageError(f"calibration={directory}: none of the images could be read", params=("calibration",))


def spread(items: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` items taken evenly across ``items`` (all classes, not the first one)."""
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def preprocessed_batches(files: Sequence[str], size: Sequence[int], batch: int = 1) -> Iterable[np.ndarray]:
    """float32 [batch, H, W, 3] batches of ``files`` with the models' eval preprocessing."""
    from ..formats.keras_models import import_tensorflow
    from .inputs import decode_and_preprocess

    tf = import_tensorflow()
    ds = tf.data.Dataset.from_tensor_slices(list(files)).map(
        lambda p: decode_and_preprocess(tf, p, size), num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
    for images in ds:
        yield images.numpy()


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of rows whose best class is the same in both probability arrays."""
    return float(100.0 * np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


# ----------------------------------------------------------------------------- staging
def staging_path(target: Path, kind: str = "staging") -> Path:
    """A hidden sibling of ``target`` unique to this process: never mistaken for the result."""
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


# What each kind of output looks like when this tool wrote it: ``overwrite`` replaces only
# those (or an empty folder), never a user's other file or folder given by mistake.
# kind: (what it is, the file inside a folder of that kind that marks it as ours)
OUTPUT_KINDS = {"finetune": ("a finetune output folder", "finetune.json"),
                "saved_model": ("a SavedModel folder", "saved_model.pb"),
                "tflite": ("a .tflite file", None)}


def _describe_kind(kind: str) -> str:
    what, marker = OUTPUT_KINDS[kind]
    return f"{what} (with {marker})" if marker else what


def replaceable(target: Path, kind: str) -> bool:
    """True if ``target`` is something of ``kind`` that overwrite may replace."""
    if target.is_symlink():
        return False
    if kind == "tflite":
        if not target.is_file():
            return False
        with open(target, "rb") as f:
            return f.read(8)[4:8] == b"TFL3"  # the flatbuffer's file identifier
    marker = OUTPUT_KINDS[kind][1]
    return target.is_dir() and ((target / marker).is_file() or not any(target.iterdir()))


def check_target(target: Path, overwrite: bool, param: str = "out", kind: str = "finetune") -> None:
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise UsageError(f"{param}={target} already exists", hint="choose another path or pass overwrite=True",
                             params=(param, "overwrite"))
        if not replaceable(target, kind):
            raise UsageError(f"{param}={target} exists and is not {_describe_kind(kind)}; overwrite replaces "
                             "only what this tool wrote", hint="choose another path, or move it away yourself",
                             params=(param, "overwrite"))
    if not target.parent.is_dir():
        raise UsageError(f"{param}={target}: the folder {target.parent} does not exist", params=(param,))


def publish(staging: Path, target: Path, overwrite: bool, kind: str = "finetune") -> None:
    """Rename the finished ``staging`` to ``target`` (replacing it only with ``overwrite``, and
    only if it is still something of ``kind``: it is checked again, as it may have changed)."""
    old = None
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise UsageError(f"out={target} appeared while working; nothing was replaced",
                             hint="choose another path or pass overwrite=True", params=("out", "overwrite"))
        check_target(target, overwrite, kind=kind)
        old = staging_path(target, "old")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- `export`
@dataclass
class ExportResult:
    """What `export` wrote and how the int8 file compares with the float one."""

    model: str
    to: str
    out: str
    quantize: str | None
    calibration_images: int
    top1_agreement: float | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_model(model: str | Path, to: str, out: Path, *, quantize: str | None = None,
                 calibration: Path | None = None, calibration_size: int = DEFAULT_CALIBRATION_IMAGES,
                 io_type: str = "uint8", overwrite: bool = False, catalog: Any = None,
                 cache_dir: Path | None = None) -> ExportResult:
    """Convert a catalog model (restored from its checkpoint) or a fine-tuned one.

    ``to='tflite'`` writes a file at ``out``; with ``quantize='int8'`` it is full-integer,
    calibrated on ``calibration`` images, and its top-1 agreement with the float
    conversion on those images is reported. ``to='saved_model'`` writes a directory.
    """
    start = time.perf_counter()
    if to not in TARGETS:
        raise UsageError(f"unknown to={to!r}", hint=f"use one of: {', '.join(TARGETS)}", params=("to",))
    if quantize not in (None, "int8"):
        raise UsageError(f"unknown quantize={quantize!r}", hint="use quantize='int8'", params=("quantize",))
    if quantize and to != "tflite":
        raise UsageError("quantize='int8' applies to to='tflite'", hint="SavedModels stay float",
                         params=("quantize", "to"))
    if quantize and calibration is None:
        raise UsageError("quantize='int8' needs calibration (a folder of images)",
                         hint="a folder of a few hundred images like those the model will see",
                         params=("quantize", "calibration"))
    if calibration_size < 1:
        raise UsageError(f"calibration_size must be at least 1, got {calibration_size}",
                         params=("calibration_size",))
    out = Path(out)
    check_target(out, overwrite, kind=to)
    files = calibration_files(calibration, calibration_size) if quantize else []
    keras_model, entry = _keras_model_for(model, catalog, cache_dir)
    staging = staging_path(out)
    agreement = None
    try:
        with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
            saved = Path(tmp) / "saved_model"
            write_saved_model(keras_model, saved)
            if to == "saved_model":
                shutil.move(str(saved), staging)
            elif quantize:
                size = entry.input_size[:2]
                write_int8_tflite(saved, staging, lambda: preprocessed_batches(files, size), io_type)
                float_path = write_tflite(saved, Path(tmp) / "float.tflite")
                agreement = _agreement(entry, float_path, staging, files)
            else:
                write_tflite(saved, staging)
        publish(staging, out, overwrite, kind=to)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink(missing_ok=True)
        raise
    return ExportResult(entry.id, to, str(out), quantize, len(files), agreement,
                        round(time.perf_counter() - start, 2))


def _keras_model_for(model: str | Path, catalog: Any, cache_dir: Path | None) -> tuple[Any, Any]:
    """The Keras model to convert: a catalog model's checkpoint, a checkpoint, or a fine-tuned OUT."""
    from ..formats.resolve import locate_weights

    restored = locate_weights(model, catalog=catalog, purpose="exported").load(cache_dir=cache_dir)
    return restored.keras_model, restored.entry


def _agreement(entry: Any, float_path: Path, int8_path: Path, files: Sequence[str]) -> float:
    from ..formats.tflite import load_tflite

    float_model, int8_model = load_tflite(entry, float_path), load_tflite(entry, int8_path)
    a, b = [], []
    for batch in preprocessed_batches(files, entry.input_size[:2], batch=32):
        a.append(float_model(batch))
        b.append(int8_model(batch))
    return round(top1_agreement(np.concatenate(a), np.concatenate(b)), 2)
