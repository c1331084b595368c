"""Files written so that readers never see half of one (manifests, trust, profile, sidecars,
plots), and small JSON state read back as untrusted input. The one home of both rules:
nothing else in the package calls ``mkstemp``/``os.replace`` for a file or ``json.loads`` on one.

Writers: a temp file next to the target (``mkstemp``: ``O_EXCL``, so a planted link is never
followed), given the permissions the user's umask asks for (``mkstemp`` alone would make every
file 0600 and a cache shared by a team unreadable to the others), fsync'd and renamed in place.
Readers: :func:`read_state` tells *missing* from *damaged*; each caller decides what a damaged
file means (an error for the trust store, a broken entry for a manifest); :func:`read_json` is
the lenient form for files whose loss costs nothing (a profile, a lock's holder, a parsed
catalog copy). Neither follows a link.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Iterator

STATE_CAP = 64 << 20  # no state file we write comes near this; a bigger one is not ours
_umask_lock = threading.Lock()


class DamagedStateFile(ValueError):
    """A state file exists but is not what we wrote (torn, truncated, edited, wrong shape)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def current_umask() -> int:
    with _umask_lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 minus the umask."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_file(path: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """A new file open for writing next to ``path``; when the block ends without an error it is
    fsync'd and renamed to ``path`` (readers never see half a file), otherwise deleted.

    ``mode`` (default: what the umask allows) is for files that must stay private to their owner.
    """
    import tempfile  # not on the light commands' import path (they only read)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, default_file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path, mode) as fh:
        fh.write(data)


def atomic_write_json(path: Path, data: Any, mode: int | None = None) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"), mode)


def read_state(path: Path, cap: int = STATE_CAP, *, private: bool = False) -> Any | None:
    """Parsed JSON of a state file; None when it does not exist; DamagedStateFile when it is
    unreadable, a link, too big, not UTF-8 JSON, or holds non-finite numbers.

    ``private``: also refuse a file another user owns or may write (for files that steer what
    we trust, such as the parsed catalog copy)."""
    from ..errors import CacheError
    from .safepath import read_capped

    try:
        raw = read_capped(path, cap, private=private)
    except FileNotFoundError:
        return None
    except CacheError as exc:
        raise DamagedStateFile(path, exc.message) from None
    except OSError as exc:
        raise DamagedStateFile(path, f"cannot be read ({exc.strerror or exc})") from None

    def no_constants(name: str):
        raise ValueError(f"non-finite number {name}")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        reason = "empty" if not raw.strip() else f"not valid JSON ({exc})"
        raise DamagedStateFile(path, reason) from None


def read_json(path: Path, cap: int = STATE_CAP, *, private: bool = False) -> Any | None:
    """Lenient: None when missing *or* damaged (for caches of derived data only)."""
    try:
        return read_state(path, cap, private=private)
    except DamagedStateFile:
        return None
