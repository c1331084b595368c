"""Keras model -> SavedModel, float TFLite, full-integer TFLite; and the `export` command's logic.

    write_saved_model(keras_model, Path("out/saved_model"))
    write_tflite(Path("out/saved_model"), Path("out/model.tflite"))
    write_int8_tflite(Path("out/saved_model"), Path("out/model_int8.tflite"), calibration_batches)

A ``_quant`` checkpoint restores as its fake-quant network; its int8 file is quantized with
the checkpoint's own ranges (``write_fake_quant_tflite``), no calibration needed. Otherwise
full-integer quantization is post-training quantization with a representative dataset,
as TensorFlow Lite documents it (``Optimize.DEFAULT`` + ``representative_dataset`` +
``TFLITE_BUILTINS_INT8`` only + integer ``inference_input_type``/``inference_output_type``):
every op, the input and the output are integers, so the file runs on integer-only
accelerators. The input's scale and zero point come from the calibration images, and
``zoo.formats.tflite`` reads them from the file, so callers keep feeding floats in [-1, 1].

``export_model`` (the `export` command) writes to a temporary name next to the target
and renames it into place, so a failed or interrupted export leaves nothing that looks done.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..data.images import preprocessed_batches
from ..errors import UsageError
from ..formats.base import top1_agreement
from ..formats.card import write_card
from ..formats.saved_model import write_saved_model
from .publish import check_target, publish, remove_dead_leftovers, staging_path
from ..formats.kinds import CONVERTED_FORMATS
from .options import DEFAULT_CALIBRATION_IMAGES, EXPORT_TARGETS, INT8_IO_TYPES, OWN_RANGES, check_quantize



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


# TOCO's input statistics for the published uint8 files: real = (q - 128) / 128, i.e. [-1, 1)
# (the vendored mobilenet_v1_0.25_128_quant.tflite's input: scale 0.0078125, zero point 128).
PUBLISHED_INPUT_STATS = (128.0, 128.0)


def write_fake_quant_tflite(saved_model: Path, path: Path, io_type: str = "uint8") -> Path:
    """Full-integer TFLite of a model carrying fake-quant ops, from their ranges (no calibration).

    The TF1-style converter with ``inference_type=uint8`` is the path upstream's uint8 files
    were made by (``tflite_convert --inference_type=QUANTIZED_UINT8`` over a fake-quant
    graph): it reads each FakeQuant op's range and quantizes every tensor with it, weights
    asymmetric uint8 as in the published files. The TF2 converter makes int8 weights with a
    non-zero zero point from these ranges, which LiteRT's XNNPACK refuses to run.
    """
    from ..formats.keras_models import import_tensorflow

    if io_type != "uint8":
        raise UsageError(f"a fake-quant model exports with uint8 input and output (asked: {io_type})",
                         hint="leave --int8-io at uint8, the published files' type",
                         params=("io_type",))
    tf = import_tensorflow()
    converter = tf.compat.v1.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.inference_type = tf.uint8
    converter.quantized_input_stats = {converter.get_input_arrays()[0]: PUBLISHED_INPUT_STATS}
    from .._util.runtime_logs import native_stderr_hidden

    with native_stderr_hidden():
        flatbuffer = converter.convert()
    Path(path).write_bytes(flatbuffer)
    return Path(path)


# ----------------------------------------------------------------------------- images
def calibration_files(directory: Path, limit: int = DEFAULT_CALIBRATION_IMAGES) -> list[str]:
    """Up to ``limit`` images under ``directory`` (any depth), evenly spread, stable order; each one
    decodes (``zoo.data.imagefiles``' rules; anything else under it is an error naming it)."""
    from ..data.imagefiles import IMAGE_SUFFIXES, scan_folder
    from .inputs import undecodable

    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"calibration={directory}: no such directory",
                         hint="pass a folder of representative images (class folders or flat)",
                         params=("calibration",))
    found = scan_folder(directory, recursive=True)
    if not found.images and not found.rejected:
        raise UsageError(f"calibration={directory} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                         hint="pass a folder of a few hundred images like the ones the model will see",
                         params=("calibration",))
    files = spread([str(p) for p in found.images], limit)
    found.rejected += undecodable(files)
    if found.rejected:
        raise UsageError(f"calibration={directory}: {len(found.rejected)} file(s) are not readable images:"
                         f"{found.describe_rejected()}", hint="remove or convert them; nothing was written",
                         params=("calibration",))
    return files


def spread(items: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` items taken evenly across ``items`` (all classes, not the first one)."""
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


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
    max_abs_dp: float | None = None  # converted files: vs the .tflite they came from
    check: dict[str, Any] | None = None  # converted files: images, kind, runtime and figures of the check
    versions: dict[str, str] | None = None  # converted files: converter versions
    source: str | None = None  # converted files: the .tflite converted
    forced: bool = False
    ranges: str | None = None  # int8: where the quantization ranges came from

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_model(model: str | Path, to: str, out: Path, *, quantize: str | None = None,
                 calibration: Path | None = None, calibration_size: int = DEFAULT_CALIBRATION_IMAGES,
                 io_type: str = "uint8", overwrite: bool = False, catalog: Any = None,
                 cache_dir: Path | None = None, force: bool = False) -> ExportResult:
    """Convert a catalog model (restored from its checkpoint) or a fine-tuned one.

    ``to='tflite'`` writes a file at ``out``; with ``quantize='int8'`` it is full-integer,
    calibrated on ``calibration`` images, and its top-1 agreement with the float
    conversion on those images is reported. ``to='saved_model'`` writes a directory.
    ``to='onnx'`` / ``'openvino'`` convert the model's .tflite and check the result against it
    (``zoo.training.convert``; ``calibration`` images are then the check images, ``force``
    publishes a conversion that fails the check).
    """
    start = time.perf_counter()
    if to not in EXPORT_TARGETS:
        raise UsageError(f"unknown to={to!r}", hint=f"use one of: {', '.join(EXPORT_TARGETS)}", params=("to",))
    check_quantize(quantize)
    if to in CONVERTED_FORMATS:
        if quantize:
            raise UsageError(f"quantize applies to to='tflite'; to={to!r} converts the model's .tflite as it is "
                             "(the uint8 one of a quantized model)", params=("quantize", "to"))
        from .convert import export_converted

        done = export_converted(model, to, Path(out), calibration=calibration, calibration_size=calibration_size,
                                force=force, overwrite=overwrite, catalog=catalog, cache_dir=cache_dir)
        check = done["check"]
        return ExportResult(done["model"], to, str(out), None, check["images"] if check["kind"] == "calibration" else 0,
                            check["top1_agreement"], round(time.perf_counter() - start, 2),
                            max_abs_dp=check["max_abs_dp"], check=check, versions=done["versions"],
                            source=done["source"], forced=done["forced"])
    if quantize and to != "tflite":
        raise UsageError("quantize='int8' applies to to='tflite'", hint="SavedModels stay float",
                         params=("quantize", "to"))
    ref = _weights_ref(model, catalog)
    from ..formats.ckpt import carries_fake_quant

    # a _quant checkpoint, or a model fine-tuned with qat: its fake-quant ranges quantize it
    own_ranges = carries_fake_quant(ref.entry)
    finetuned = ref.kind == "finetuned"  # whether it carries ranges shows once it is loaded
    if quantize and calibration is None and not own_ranges and not finetuned:
        _needs_calibration()
    if calibration_size < 1:
        raise UsageError(f"calibration_size must be at least 1, got {calibration_size}",
                         params=("calibration_size",))
    out = Path(out)
    check_target(out, overwrite, kind=to)
    remove_dead_leftovers(out)
    files = calibration_files(calibration, calibration_size) if quantize and calibration is not None else []
    restored = ref.load(cache_dir=cache_dir)
    keras_model, entry, base_entry = restored.keras_model, restored.entry, ref.base_entry
    if finetuned:
        from ..formats.fake_quant import fake_quant_layers

        own_ranges = bool(fake_quant_layers(keras_model))
        if quantize and calibration is None and not own_ranges:
            _needs_calibration()
    staging = staging_path(out)
    agreement = None
    try:
        with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
            saved = Path(tmp) / "saved_model"
            write_saved_model(keras_model, saved, num_classes=entry.num_classes)
            if to == "saved_model":
                shutil.move(str(saved), staging)
            elif quantize and own_ranges:
                write_fake_quant_tflite(saved, staging, io_type)
                if files:  # --calibration given: the images check the file against the float conversion
                    agreement = _agreement(entry, write_tflite(saved, Path(tmp) / "float.tflite"), staging, files)
            elif quantize:
                size = entry.input_size[:2]
                write_int8_tflite(saved, staging, lambda: preprocessed_batches(files, size), io_type)
                float_path = write_tflite(saved, Path(tmp) / "float.tflite")
                agreement = _agreement(entry, float_path, staging, files)
            else:
                write_tflite(saved, staging)
        card = write_card(out, entry, base_entry) if to == "tflite" else None  # says what the file is
        try:
            publish(staging, out, overwrite, kind=to)
        except BaseException:
            if card is not None:
                card.unlink(missing_ok=True)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink(missing_ok=True)
        raise
    return ExportResult(entry.id, to, str(out), quantize, len(files), agreement,
                        round(time.perf_counter() - start, 2),
                        ranges=(OWN_RANGES if own_ranges else "calibration") if quantize else None)


def _needs_calibration() -> None:
    raise UsageError("quantize='int8' needs calibration (a folder of images)",
                     hint="a folder of a few hundred images like those the model will see (a _quant model, or one "
                          "fine-tuned with --qat, is quantized with its own ranges instead)",
                     params=("quantize", "calibration"))


def _weights_ref(model: str | Path, catalog: Any) -> Any:
    """The model to convert, found (not loaded): a catalog model's checkpoint, a checkpoint,
    or a fine-tuned OUT."""
    from ..formats.resolve import locate_weights

    return locate_weights(model, catalog=catalog, purpose="exported")


def _agreement(entry: Any, float_path: Path, int8_path: Path, files: Sequence[str]) -> float:
    from ..formats.tflite import load_tflite

    float_model, int8_model = load_tflite(entry, float_path), load_tflite(entry, int8_path)
    a, b = [], []
    for batch in preprocessed_batches(files, entry.input_size[:2], batch=32):
        a.append(float_model(batch))
        b.append(int8_model(batch))
    return round(top1_agreement(np.concatenate(a), np.concatenate(b)), 2)
