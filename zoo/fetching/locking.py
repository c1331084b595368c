"""Per-model lock files in the (possibly shared) cache, that say who holds them.

Locks only save duplicate downloads; correctness never depends on them (see ``zoo.fetching.cache``).
Why not ``filelock``: it opens the lock path with ``O_TRUNC`` and follows symlinks, so a
link planted in ``.locks/`` would truncate a file outside the cache. Here the file is opened
with ``O_NOFOLLOW`` (see ``zoo._util.safepath``), locked with ``flock`` (released by the kernel
when the holder dies, even by SIGKILL; on Linux NFS it maps to POSIX byte-range locks), and
holds a line of JSON naming the holder, so a waiting process can say whom it waits for.
The holder removes the file before unlocking; a waiter that wins a lock on a file no longer
at the path starts over (the usual inode check), so removal is race-free.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from ..errors import CacheError
from .._util.safepath import open_private


class LockTimeout(CacheError):
    """Another process kept the lock for longer than we were willing to wait."""


def host_name() -> str:
    """This machine's name as it appears in private file names: letters, digits and '-' only."""
    raw = socket.gethostname() or "localhost"
    clean = "".join(c if c.isalnum() and c.isascii() else "-" for c in raw.split(".")[0])
    return clean.strip("-")[:40] or "localhost"


def holder(path: Path) -> str | None:
    """Who holds (or last held) the lock at ``path``, for messages; None when unknown."""
    from .._util.atomic import read_json

    info = read_json(path, 4096)  # written in place by its holder: may be torn, or empty
    if not isinstance(info, dict):
        return None
    since = info.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {info.get('pid')} on host {info.get('host')} ({info.get('what') or 'working'} since {when})"


class CacheLock:
    """An exclusive lock on ``path``; use as a context manager."""

    def __init__(self, path: Path, *, timeout: float, what: str = "",
                 on_wait: Callable[[str], None] | None = None, poll: float = 0.1):
        self.path, self.timeout, self.what, self.on_wait, self.poll = Path(path), timeout, what, on_wait, poll
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: filelock's msvcrt lock (no symlinks to fear there)
            return self._acquire_portable()

        deadline = time.monotonic() + self.timeout
        told = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = open_private(self.path, os.O_RDWR | os.O_CREAT, adopt=False)
            except PermissionError:  # another user's lock file in a shared cache: locking needs no write
                fd = open_private(self.path, os.O_RDONLY, adopt=False)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                who = holder(self.path) or "another process"
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"waited {self.timeout:.0f} s for {who}, which holds {self.path}",
                                      "if that process is gone (another machine?), remove the lock file, "
                                      "or run `mobilenet-zoo cache prune` on its machine") from None
                if not told and self.on_wait is not None:
                    self.on_wait(f"waiting for {who} to finish ({self.path.name})")
                    told = True
                time.sleep(self.poll)
                continue
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.lstat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed this file while we waited: start over
                os.close(fd)
                continue
            self._fd = fd
            try:
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps({"host": host_name(), "pid": os.getpid(), "since": time.time(),
                                         "what": self.what}).encode())
            except OSError:
                pass  # read-only descriptor: the lock holds all the same
            return

    def _acquire_portable(self) -> None:  # pragma: no cover
        from filelock import FileLock, Timeout

        self._portable = FileLock(str(self.path), timeout=self.timeout)
        try:
            self._portable.acquire()
        except Timeout:
            raise LockTimeout(f"waited {self.timeout:.0f} s for another process holding {self.path}") from None

    def release(self) -> None:
        portable = getattr(self, "_portable", None)
        if portable is not None:  # pragma: no cover
            portable.release()
            self._portable = None
            return
        import fcntl

        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding: see the module docstring
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "CacheLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
