"""The partial file of one download: its names, its sidecar, and its bookkeeping.

A download lands in ``<name>.part``; next to it the sidecar ``<name>.part.json`` (written
atomically) records url, ETag, Last-Modified and sizes, so a *later process* can resume it.
Every module that names, moves or deletes a partial uses the rules here (the downloader,
the cache that adopts a dead process's leftover, the mirror command).

:class:`PartialFile` is the file's state and nothing else, the way pip separates its
``_FileDownload`` from the ``Downloader``: the open file, how many bytes arrived, the size
expected, "restart from zero", "write a chunk" (with the caps), and the final size + sha256
check. What a server's answer means, and when to try again, is ``zoo.fetching.download``'s business.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol

from .._util.atomic import DamagedStateFile, atomic_write_json, read_state
from ..errors import CacheError, DownloadError, IntegrityError
from .._util.safepath import open_file

PARTIAL_SUFFIX = ".part"
SIDECAR_SUFFIX = ".json"
SIDECAR_CAP = 64 << 10  # a sidecar is a few hundred bytes; a bigger one is not ours


class Sink(Protocol):
    """Optional tee, e.g. an unpacker consuming the stream while it downloads."""

    def restart(self) -> None: ...  # the file (re)starts from byte 0; called before any write

    def write(self, chunk: bytes) -> None: ...  # every byte of the file, in order (maybe from a helper thread)


@dataclass(frozen=True)
class PartialState:
    """What the sidecar remembers about a partial file."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    expected_size: int | None = None
    total: int | None = None  # full size the server announced (decoded size unknown if encoded)
    resumable: bool = True  # False once the server content-encoded the body: offsets mean nothing


# --------------------------------------------------------------------------- names and sidecar

def sidecar_path(partial: Path) -> Path:
    """``<partial>.json``: the one place that names a partial's sidecar."""
    partial = Path(partial)
    return partial.with_name(partial.name + SIDECAR_SUFFIX)


def read_sidecar(partial: Path) -> PartialState | None:
    """The sidecar's state, or None when it is missing or unreadable (never trusted blindly)."""
    try:
        raw = read_state(sidecar_path(partial), cap=SIDECAR_CAP)
        if not isinstance(raw, dict):
            return None
        state = PartialState(url=str(raw["url"]), etag=raw.get("etag"),
                             last_modified=raw.get("last_modified"),
                             expected_size=raw.get("expected_size"), total=raw.get("total"),
                             resumable=bool(raw.get("resumable", True)))
    except (DamagedStateFile, OSError, ValueError, KeyError, TypeError):
        return None
    ok_str = all(v is None or isinstance(v, str) for v in (state.etag, state.last_modified))
    ok_int = all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
                 for v in (state.expected_size, state.total))
    return state if ok_str and ok_int else None


def write_sidecar(partial: Path, state: PartialState) -> None:
    """Write the sidecar atomically (temp file + os.replace)."""
    atomic_write_json(sidecar_path(partial), {"version": 1, **asdict(state)})


def forget_sidecar(partial: Path) -> None:
    """Drop the sidecar only: the bytes on disk start a new download and cannot be resumed."""
    sidecar_path(partial).unlink(missing_ok=True)


def remove_partial(partial: Path) -> None:
    """Delete a partial file and its sidecar (missing files are fine)."""
    Path(partial).unlink(missing_ok=True)
    forget_sidecar(partial)


def move_partial(source: Path, target: Path) -> None:
    """Rename a partial and, when it has one, its sidecar (FileNotFoundError: someone else took it)."""
    os.rename(source, target)
    with contextlib.suppress(FileNotFoundError):
        os.rename(sidecar_path(source), sidecar_path(target))


# --------------------------------------------------------------------------- verification

def integrity_error(message: str, *, label: str | None, url: str, expected_sha256: str | None,
                    actual_sha256: str | None, expected_size: int | None, actual_size: int,
                    hint: str | None = None) -> IntegrityError:
    who = f"[{label}] " if label else ""
    text = (f"{who}{message}: {url}\n"
            f"  expected sha256 {expected_sha256 or '(not pinned)'}, size "
            f"{expected_size if expected_size is not None else '(unknown)'}\n"
            f"  actual   sha256 {actual_sha256 or '(not computed)'}, size {actual_size}\n"
            f"  the partial download was deleted")
    return IntegrityError(text, hint or "the server delivered different bytes than the catalog "
                          "pins; retry, try another mirror, or update the catalog if upstream "
                          "re-published the file", model_id=label, url=url, expected_sha256=expected_sha256,
                          actual_sha256=actual_sha256, expected_size=expected_size, actual_size=actual_size)


# --------------------------------------------------------------------------- the file's state

class PartialFile:
    """One partial file while it downloads: bytes on disk, running sha256, expected size.

    ``size`` is what the file holds; ``hasher`` is None until the prefix on disk (a resumed
    partial) has been hashed once (:meth:`sync`). ``total`` is the full size when known (for
    progress). Every chunk goes through :meth:`write`, which enforces the size caps.
    """

    def __init__(self, path: Path, *, url: str, label: str | None, expected_size: int | None,
                 expected_sha256: str | None, chunk_size: int, max_unknown_size: int,
                 sink: Sink | None = None, progress: Callable[[int, int | None], None] | None = None):
        self.path, self.url, self.label = Path(path), url, label
        self.expected_size, self.expected_sha256 = expected_size, expected_sha256
        self.chunk_size, self.max_unknown_size = chunk_size, max_unknown_size
        self.sink, self.progress = sink, progress
        self.hasher: hashlib._Hash | None = None
        self.size = 0
        self.total: int | None = expected_size
        self.state: PartialState | None = None  # what the sidecar holds
        self._fh = None

    def on_disk(self) -> int:
        try:
            return os.lstat(self.path).st_size
        except FileNotFoundError:
            return 0

    def resume_at(self, offset: int) -> None:
        """Continue after ``offset`` bytes already on disk (hashed lazily, by :meth:`sync`)."""
        self.size = offset
        if self.state is not None and self.state.total is not None and self.total is None:
            self.total = self.state.total

    def restart(self) -> None:
        """Truncate the file and start over from byte 0 (the sink starts over too)."""
        with open_file(self.path, "wb"):
            pass
        self.hasher, self.size = hashlib.sha256(), 0
        if self.sink is not None:
            self.sink.restart()

    def sync(self) -> bool:
        """Hash the prefix already on disk once, replaying it into the sink.

        False when the file is shorter than recorded (the caller restarts it).
        """
        if self.hasher is not None:
            return True
        hasher = hashlib.sha256()
        if self.sink is not None:
            self.sink.restart()
        done = 0
        with open_file(self.path, "rb") as f:
            while done < self.size and (chunk := f.read(min(self.chunk_size, self.size - done))):
                hasher.update(chunk)
                if self.sink is not None:
                    self.sink.write(chunk)
                done += len(chunk)
        if done != self.size:
            return False
        self.hasher = hasher
        return True

    @contextlib.contextmanager
    def appending(self) -> Iterator["PartialFile"]:
        """The file open for :meth:`write`, positioned after the bytes it holds."""
        with open_file(self.path, "r+b") as fh:
            fh.seek(self.size)
            self._fh = fh
            try:
                yield self
            finally:
                self._fh = None

    def write(self, data: bytes) -> None:
        """Append one chunk (inside :meth:`appending`): cap, write, hash, tee, report progress."""
        if not data:
            return
        if self.expected_size is None and self.size + len(data) > self.max_unknown_size:
            self._abandon()
            raise DownloadError(f"received more than {self.max_unknown_size} bytes and the catalog gives "
                                "no size; refusing to read on", model_id=self.label, url=self.url,
                                hint="add size_bytes to the catalog entry if the file really is this big")
        if self.expected_size is not None and self.size + len(data) > self.expected_size:
            self._abandon()
            raise integrity_error("more bytes than expected", label=self.label, url=self.url,
                                  expected_sha256=self.expected_sha256, actual_sha256=None,
                                  expected_size=self.expected_size, actual_size=self.size + len(data))
        try:
            self._fh.write(data)
        except OSError as exc:  # local disk, not the network: retrying would not help
            raise CacheError(f"cannot write {self.path}: {exc.strerror or exc}",
                             "free some disk space or point the cache elsewhere") from exc
        self.hasher.update(data)
        if self.sink is not None:
            self.sink.write(data)
        self.size += len(data)
        if self.progress is not None:
            self.progress(self.size, self.total)

    def _abandon(self) -> None:
        if self._fh is not None:
            self._fh.close()
        remove_partial(self.path)

    def save_state(self, headers: Mapping[str, str], total: int | None, encoded: bool,
                   keep_validators: bool = False) -> None:
        """Record a response's validators in the sidecar (a 206 may omit them: keep the stored ones)."""
        old = self.state if keep_validators else None
        etag = headers.get("etag") or (old.etag if old else None)
        lm = headers.get("last-modified") or (old.last_modified if old else None)
        new = PartialState(url=self.url, etag=etag, last_modified=lm,
                           expected_size=self.expected_size, total=total, resumable=not encoded)
        if new != self.state:
            write_sidecar(self.path, new)
            self.state = new

    def verify(self) -> str:
        """Size then sha256 of what arrived; on a mismatch delete the partial + sidecar and raise
        IntegrityError. Returns the sha256."""
        digest = self.hasher.hexdigest()
        bad = None
        if self.expected_size is not None and self.size != self.expected_size:
            bad = "size mismatch"
        elif self.expected_sha256 and digest != self.expected_sha256.strip().lower():
            bad = "sha256 mismatch"
        if bad:
            remove_partial(self.path)
            raise integrity_error(bad, label=self.label, url=self.url, expected_sha256=self.expected_sha256,
                                  actual_sha256=digest, expected_size=self.expected_size, actual_size=self.size)
        return digest
