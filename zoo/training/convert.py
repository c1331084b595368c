"""`export --to onnx|openvino`: a model's ``.tflite`` converted, checked, then published.

The source is always the model's ``.tflite``: a catalog model's own (the uint8 file of a
quantized one, so the ONNX model keeps its integer arithmetic), a fine-tuned OUT's
``model.tflite``, or a local ``.tflite``. ONNX comes from tf2onnx, the IR from OpenVINO's
own reader (f32 weights, never compressed to f16).

Before anything is published, the converted file is loaded in its runtime and compared with
the ``.tflite`` on LiteRT, on the ``calibration`` images or on fixed pseudo-random ones:
top-1 agreement and max |dp|. Below ``MIN_TOP1_AGREEMENT`` or above ``MAX_ABS_DP`` the
export is refused with the figures, unless ``force``. The card beside the file
(``zoo.formats.card``) records the source's digest, the converter and runtime versions and
the check, so a derived file says what made it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .._util.safepath import remove_tree
from ..errors import RestoreError, UsageError
from ..fetching.hashing import sha256_file
from ..formats.base import top1_agreement
from ..formats.card import write_card
from .options import MAX_ABS_DP, MIN_TOP1_AGREEMENT, SYNTHETIC_CHECK_IMAGES
from .publish import check_target, has_own_card, publish, remove_dead_leftovers, staging_path

SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}


def export_converted(model: str | Path, to: str, out: Path, *, calibration: Path | None, calibration_size: int,
                     force: bool, overwrite: bool, catalog: Any, cache_dir: Path | None) -> dict[str, Any]:
    """Write ``out`` (``.onnx``, or an IR ``.xml`` with its ``.bin``); returns what the check measured."""
    from ..formats.resolve import locate

    out = Path(out)
    if out.suffix != SUFFIX[to]:
        raise UsageError(f"out={out}: an {to} export is a {SUFFIX[to]} file",
                         hint=f"name it like {out.with_suffix(SUFFIX[to]).name}", params=("out",))
    check_target(out, overwrite, kind=to)
    remove_dead_leftovers(out)
    if to == "openvino":
        remove_dead_leftovers(out.with_suffix(".bin"))
    files = _check_files(calibration, calibration_size)
    try:
        ref = locate(model, "tflite", catalog=catalog)
    except UsageError as exc:
        raise UsageError(f"{model}: {exc.message}", hint=f"--to {to} converts the model's .tflite; "
                         "export a checkpoint to one first (`--to tflite`), then export that file") from None
    source = ref.load(cache_dir=cache_dir, runtime="litert", threads=1)
    entry = source.entry
    work = staging_path(out)  # a folder named like out's staging: a killed run's is removed by the next
    work.mkdir()
    try:
        staged = work / f"model{SUFFIX[to]}"
        versions = _convert(source, to, staged)
        check = _check(source, to, staged, files)
        failed = check["top1_agreement"] < MIN_TOP1_AGREEMENT or check["max_abs_dp"] > MAX_ABS_DP
        if failed and not force:
            raise RestoreError(
                f"{entry.id}: the {to} conversion disagrees with the .tflite on {check['images']} {check['kind']} "
                f"images: top-1 agreement {check['top1_agreement']:.1f}% (at least {MIN_TOP1_AGREEMENT:g}% needed), "
                f"max |dp| {check['max_abs_dp']:.3g} (at most {MAX_ABS_DP:g}); nothing was written",
                hint="check on real images with --calibration DIR, or pass --force to write it anyway")
        conversion = {"from": str(source.source), "from_sha256": sha256_file(source.source), "to": to,
                      "versions": versions, "check": check, "forced": bool(failed)}
        _publish(staged, out, overwrite, to, entry, ref.base_entry or entry, conversion)
    finally:
        remove_tree(work)
    return {"model": entry.id, "source": str(source.source), "check": check, "versions": versions,
            "forced": bool(failed)}


def _convert(source: Any, to: str, staged: Path) -> dict[str, str]:
    from .._util.atomic import atomic_write_bytes

    if to == "onnx":
        from ..formats.onnx_runtime import converter_versions, tflite_to_onnx

        atomic_write_bytes(staged, tflite_to_onnx(source))
        return converter_versions()
    from ..formats.openvino_runtime import load_openvino, openvino_module

    load_openvino(source.entry, source.source, threads=1).save_ir(staged)
    return {"openvino": openvino_module().__version__}


def _runtime_for(to: str) -> str:
    """The runtime that checks a converted file: ONNX Runtime for ONNX when installed, else OpenVINO."""
    import importlib.util

    if to == "onnx" and importlib.util.find_spec("onnxruntime") is None and importlib.util.find_spec("openvino"):
        return "openvino"
    return "onnxruntime" if to == "onnx" else "openvino"


def _check(source: Any, to: str, staged: Path, files: list[str]) -> dict[str, Any]:
    from ..formats.resolve import load_file

    runtime = _runtime_for(to)
    converted = load_file(source.entry, staged, to, runtime=runtime, threads=1)
    if files:
        from ..data.images import load_images

        images, kind = load_images(files, source.input_size), "calibration"
    else:
        rng = np.random.default_rng(0)
        images = rng.uniform(-1, 1, (SYNTHETIC_CHECK_IMAGES, *source.input_size)).astype(np.float32)
        kind = "synthetic"
    a, b = source(images), converted(images)

    versions = {"runtime": runtime, "runtime_version": converted.summary().get("runtime_version")}
    return {"images": int(len(images)), "kind": kind, "top1_agreement": round(top1_agreement(a, b), 2),
            "max_abs_dp": round(float(np.abs(a - b).max()), 6), **versions}


def _check_files(calibration: Path | None, limit: int) -> list[str]:
    if calibration is None:
        return []
    from .export import calibration_files

    return calibration_files(calibration, limit)


def _publish(staged: Path, out: Path, overwrite: bool, to: str, entry: Any, base: Any,
             conversion: dict[str, Any]) -> None:
    """The file itself last: its presence means complete. An IR: the old ``.xml`` goes first
    (overwrite), then the card, the ``.bin``, the ``.xml``; so an ``.xml`` is never beside a
    ``.bin`` that is not its own, and a ``.bin`` left without its ``.xml`` by a killed export has
    this tool's card beside it, which lets the next export replace it."""
    staging = staging_path(out)
    shutil.move(str(staged), staging)
    bin_staging = card = None
    bin_published = False  # from then on the card stays, as the .bin's mark
    try:
        if to == "openvino":
            bin_target = out.with_suffix(".bin")
            if (bin_target.exists() or bin_target.is_symlink()) and not _replaceable_bin(bin_target, out, overwrite):
                raise UsageError(f"out={out}: {bin_target} already exists and is not this tool's",
                                 hint="choose another path, or move it away yourself", params=("out",))
            bin_staging = staging_path(bin_target)
            shutil.move(str(staged.with_suffix(".bin")), bin_staging)
            if out.is_file() and overwrite:
                out.unlink()
            card = write_card(out, entry, base, conversion)
            bin_staging.replace(bin_target)
            bin_published = True
        else:
            card = write_card(out, entry, base, conversion)
        publish(staging, out, overwrite, kind=to)
    except BaseException:
        staging.unlink(missing_ok=True)
        if bin_staging is not None:
            bin_staging.unlink(missing_ok=True)  # already gone once published
        if card is not None and not bin_published and not out.exists():
            card.unlink(missing_ok=True)
        raise


def _replaceable_bin(bin_target: Path, out: Path, overwrite: bool) -> bool:
    """The ``.bin`` of an IR this tool wrote (overwrite), or one a killed export left: no ``.xml``,
    this tool's card beside it. Never a link, never someone else's lone ``.bin``."""
    if bin_target.is_symlink() or not bin_target.is_file():
        return False
    return has_own_card(out) and (overwrite or not (out.exists() or out.is_symlink()))