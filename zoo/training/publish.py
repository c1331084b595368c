"""How `finetune` and `export` put their results in place: never half-written, never over a user's file.

Everything is built under a hidden, private sibling of the target (``staging_path``) and renamed
into place at the end (``publish``), so a target that exists is always complete. ``overwrite``
replaces only what this tool wrote (a finetune folder, a SavedModel, a .tflite, an empty folder),
checked before the work starts and again just before the rename.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from ..errors import UsageError


def staging_path(target: Path, kind: str = "staging") -> Path:
    """A hidden sibling of ``target`` unique to this process: never mistaken for the result.

    The name says which host and process made it, so a later run can tell a dead run's
    leftover (``remove_dead_leftovers``) from the work of one still running."""
    from ..fetching.locking import host_name

    return target.parent / f".{target.name}.{kind}-{host_name()}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def remove_dead_leftovers(target: Path) -> list[Path]:
    """Remove the staging and replaced copies of ``target`` that a killed run left (SIGKILL, a
    lost machine): only ours, only of this host, only of processes that no longer run."""
    from ..fetching.cache import pid_alive
    from ..fetching.locking import host_name
    from .._util.safepath import remove_tree

    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:staging|old)-(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)-\d+")
    removed = []
    try:
        children = list(target.parent.iterdir())
    except OSError:
        return removed
    for child in children:
        match = pattern.fullmatch(child.name)
        if not match or match["host"] != host_name() or pid_alive(int(match["pid"])):
            continue
        try:
            if hasattr(os, "geteuid") and os.lstat(child).st_uid != os.geteuid():
                continue
        except FileNotFoundError:
            continue
        remove_tree(child)
        removed.append(child)
    return removed


# What each kind of output looks like when this tool wrote it: ``overwrite`` replaces only
# those (or an empty folder), never a user's other file or folder given by mistake.
# kind: (what it is, the file inside a folder of that kind that marks it as ours)
OUTPUT_KINDS = {"finetune": ("a finetune output folder", "finetune.json"),
                "saved_model": ("a SavedModel folder", "saved_model.pb"),
                "tflite": ("a .tflite file", None),
                "onnx": ("an .onnx file this tool wrote (with its .zoo.json card)", None),
                "openvino": ("an OpenVINO IR .xml this tool wrote (with its .zoo.json card)", None)}


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
    if kind in ("onnx", "openvino"):  # no magic number of their own: our card beside them says it
        return target.is_file() and has_own_card(target)
    marker = OUTPUT_KINDS[kind][1]
    return target.is_dir() and ((target / marker).is_file() or not any(target.iterdir()))


def has_own_card(target: Path) -> bool:
    """This tool's ``.zoo.json`` card sits beside ``target`` (a file, not a link)."""
    from ..formats.card import card_path

    card = card_path(target)
    return card.is_file() and not card.is_symlink()


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
