"""Which unpacked file plays which role (checkpoint, frozen_graph, tflite, ...), found by what it is.

The catalog's ``files:`` pattern is the first guess. Upstream never documented most tarballs'
insides, so when the guess finds nothing the model folder is searched by kind:

* a checkpoint is a ``.index`` file (its prefix is returned). Preference between sets:
  ``ema/`` (averaged weights, what upstream evaluates), then the folder itself, then
  ``pristine/``; within the preferred place, the latest step. Two sets with the same step in the
  same place are an error listing both, never a silent pick.
* a frozen graph is a ``.pb`` outside a SavedModel (a ``saved_model.pb`` is not one).
* a ``.tflite`` other than an EdgeTPU-compiled one (those need the EdgeTPU runtime). When
  several remain (EdgeTPU tarballs ship ``_float``, ``_int8`` and ``_uint8``), ``variant`` picks
  one; without it, the one that matches the entry (``_uint8`` for a quantized model, ``_float``
  for a float one); anything else ambiguous is an error listing the candidates.

Light: only file names and ``stat``; the loaders then read each file's own tensors and nodes.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..catalog.registry import Entry
from ..errors import RestoreError, UsageError

TFLITE_VARIANTS = ("float", "int8", "uint8")
LOADABLE_ROLES = ("checkpoint", "frozen_graph", "tflite")  # what restore, classify, bench and eval load
# Where a checkpoint set sits, most preferred first (see the module docstring).
_CHECKPOINT_PLACES = ("ema", "", "pristine")
_SHOWN = 8


def checkpoint_order(prefix: Path) -> tuple[int, str]:
    """Sort key putting the latest checkpoint last: by step number as a number
    (``model.ckpt-99999`` before ``model.ckpt-100000``), unnumbered prefixes first."""
    match = re.search(r"-(\d+)$", Path(prefix).name)
    return (int(match.group(1)) if match else -1, Path(prefix).name)


def checkpoint_prefixes(folder: Path, pattern: str = "*") -> list[Path]:
    """The checkpoint sets in ``folder`` whose prefix matches ``pattern`` (by their ``.index``),
    the latest step last."""
    return sorted((_prefix(p) for p in Path(folder).glob(pattern + ".index") if p.is_file()), key=checkpoint_order)


def find_file(entry: Entry, model_dir: Path, role: str, *, variant: str | None = None) -> Path:
    """The unpacked file for ``role`` (for a checkpoint: its prefix); RestoreError naming what
    the folder does hold when there is none, UsageError listing them when several could serve."""
    pattern = entry.files.get(role)
    if pattern is None:
        raise RestoreError(f"{entry.id}: the catalog lists no {role} file for this model",
                           hint=f"files known for it: {', '.join(entry.files) or 'none'}")
    if variant is not None and role != "tflite":
        raise UsageError(f"variant={variant!r} picks one of several .tflite files, not a {role}",
                         params=("variant",))
    if variant is not None and variant not in TFLITE_VARIANTS:
        raise UsageError(f"unknown variant={variant!r}", hint=f"use one of: {', '.join(TFLITE_VARIANTS)}",
                         params=("variant",))
    model_dir = Path(model_dir)
    guessed = _by_pattern(model_dir, pattern, role)
    found = guessed or _by_kind(model_dir, role)
    if role == "checkpoint":
        return _one_checkpoint(entry, model_dir, found, pattern)
    if role == "tflite":
        found = [p for p in found if not p.stem.lower().endswith("_edgetpu")]  # compiled for the TPU
        return _one_tflite(entry, model_dir, found, variant, pattern)
    if not found:
        raise _missing(entry, model_dir, role, pattern)
    if len(found) > 1:
        raise _ambiguous(entry, model_dir, role, found)
    return found[0]


def roles_found(entry: Entry, model_dir: Path) -> dict[str, str | None]:
    """Each role the catalog promises -> the file found for it (relative to ``model_dir``), or None."""
    out: dict[str, str | None] = {}
    for role in entry.files:
        try:
            out[role] = find_file(entry, model_dir, role).relative_to(model_dir).as_posix()
        except (RestoreError, UsageError):
            out[role] = None
    return out


def check_roles(entry: Entry, model_dir: Path) -> dict[str, str | None]:
    """At fetch time: :func:`roles_found` (recorded in the manifest), with one warning when no
    file any command can load is found, naming the missing roles and what the folder holds. The
    entry is published all the same: its bytes verified and are upstream's; re-fetching cannot
    change them."""
    from .. import notices

    found = roles_found(entry, model_dir)
    if not any(found.get(role) for role in LOADABLE_ROLES):  # nothing any command can load
        missing = [role for role, path in found.items() if path is None]
        notices.warn(f"{entry.id}: the tarball verified, but no file was found for "
                     f"{', '.join(missing)} ({contents(model_dir)}); commands that need "
                     f"{'it' if len(missing) == 1 else 'them'} will say so")
    return found


def contents(model_dir: Path, limit: int = _SHOWN) -> str:
    """What the folder holds, for error messages: its files, relative, sorted, the first ``limit``."""
    files = sorted(p.relative_to(model_dir).as_posix() for p in Path(model_dir).rglob("*") if p.is_file())
    if not files:
        return "the folder is empty"
    shown = ", ".join(files[:limit]) + (f" ... and {len(files) - limit} more" if len(files) > limit else "")
    return f"it holds: {shown}"


# ----------------------------------------------------------------------------- guesses and search
def _by_pattern(model_dir: Path, pattern: str, role: str) -> list[Path]:
    if role == "checkpoint":
        found = checkpoint_prefixes(model_dir, pattern)
        if not found and "*" not in pattern and (model_dir / (pattern + ".index")).is_file():
            found = [model_dir / pattern]  # a literal name glob would misread ([...] in it)
        return found
    return sorted(p for p in model_dir.glob(pattern) if p.is_file())


def _by_kind(model_dir: Path, role: str) -> list[Path]:
    if role == "checkpoint":
        return sorted(_prefix(p) for p in model_dir.rglob("*.index") if p.is_file())
    if role == "frozen_graph":
        return sorted(p for p in model_dir.rglob("*.pb") if p.is_file() and p.name != "saved_model.pb")
    if role == "tflite":
        return sorted(p for p in model_dir.rglob("*.tflite") if p.is_file())
    return []


def _prefix(index: Path) -> Path:
    return index.with_name(index.name[: -len(".index")])


def _one_checkpoint(entry: Entry, model_dir: Path, found: list[Path], pattern: str) -> Path:
    if not found:
        raise _missing(entry, model_dir, "checkpoint", pattern)
    for place in _CHECKPOINT_PLACES:
        here = [p for p in found if _place_of(model_dir, p) == place]
        if here:
            break
    else:  # sets somewhere else entirely: all of them compete
        here = found
    here.sort(key=checkpoint_order)
    latest = here[-1]
    ties = [p for p in here if checkpoint_order(p)[0] == checkpoint_order(latest)[0]]
    if len(ties) > 1:
        raise _ambiguous(entry, model_dir, "checkpoint", ties, why="with the same step")
    return latest


def _place_of(model_dir: Path, prefix: Path) -> str:
    """``ema``, ``pristine`` or "" (the set sits in the model's own folder) for a checkpoint prefix."""
    parent = prefix.parent
    if parent.name in ("ema", "pristine"):
        return parent.name
    relative = parent.relative_to(model_dir).parts
    return "" if len(relative) <= 1 else "/".join(relative)


def _one_tflite(entry: Entry, model_dir: Path, found: list[Path], variant: str | None, pattern: str) -> Path:
    if variant is not None:
        chosen = [p for p in found if p.stem.endswith("_" + variant)]
        if len(chosen) == 1:
            return chosen[0]
        if not chosen:
            raise RestoreError(f"{entry.id}: no {variant} .tflite in {model_dir}", hint=contents(model_dir))
        raise _ambiguous(entry, model_dir, "tflite", chosen)
    if len(found) > 1:
        preferred = "_uint8" if entry.quantized else "_float"
        matching = [p for p in found if p.stem.endswith(preferred)]
        if len(matching) == 1:
            return matching[0]
        raise _ambiguous(entry, model_dir, "tflite", found)
    if not found:
        raise _missing(entry, model_dir, "tflite", pattern)
    return found[0]


def _missing(entry: Entry, model_dir: Path, role: str, pattern: str) -> RestoreError:
    """Not found: in a cache entry that had it when fetched, repair; in one that never had it,
    fetching again cannot help; in a folder of the user's, pass the file."""
    import fnmatch

    from .layout import spec_for_path
    from .manifest import read_manifest

    manifest = read_manifest(model_dir.parent)
    if manifest is not None and any(fnmatch.fnmatch(p, pattern + "*") for p, _, _ in manifest.files):
        advice = f"it was there when fetched: `mobilenet-zoo verify --repair {spec_for_path(entry, model_dir)}`"
    elif manifest is not None:
        advice = (f"{contents(model_dir)}; the tarball verified, so fetching it again will not help: "
                  "pass one of these files directly, or report the layout")
    else:
        advice = f"{contents(model_dir)}; pass the file itself"
    return RestoreError(f"{entry.id}: no {role} file matching {pattern!r} in {model_dir}", hint=advice)


def _ambiguous(entry: Entry, model_dir: Path, role: str, found: list[Path], why: str = "") -> UsageError:
    names = ", ".join(p.relative_to(model_dir).as_posix() for p in found[:_SHOWN])
    pick = " (variant= picks a .tflite: float, int8 or uint8)" if role == "tflite" else ""
    return UsageError(f"{entry.id}: {len(found)} {role} files {why + ' ' if why else ''}could serve: {names}",
                      hint=f"pass the one you want as the model file{pick}", params=("variant",) if pick else ())
