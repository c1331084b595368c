"""Safe, verified unpacking of a gzip'd tarball into a private staging directory.

Upstream MobileNet tarballs hold only regular files and directories, so anything else is
refused: absolute or escaping paths, every symlink and hard link, devices, fifos, sparse
or unknown member types, names that collide after case-folding and normalization, and
archives larger than ``UnpackLimits``. Python's ``tarfile`` parses headers; everything else
is done here:

* gzip is inflated by our own reader (``zlib``), which verifies the CRC and length trailer,
  notices truncation and trailing garbage, and caps every metadata read (PAX/GNU headers);
* the end of the tar must be a real end-of-archive marker followed by zero padding only, so
  a header whose size field lies cannot hide bytes after it;
* each file is created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` relative to a directory fd inside
  ``dest``, copied in 1 MiB chunks, hashed in the same pass and counted against the header
  and the limits; modes become 0o644/0o755 (no setuid, setgid, sticky);
* ``tarfile.data_filter`` runs as a second opinion, never as the only check.

On any failure ``dest`` is removed entirely before the error propagates, and nothing outside
``dest`` is created or modified. Damaged bytes (not gzip, bad CRC, truncated download) raise
``IntegrityError``; archives that are well-formed but not acceptable raise
``UnsafeArchiveError``, naming the member when there is one.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import stat
import tarfile
import threading
import unicodedata
try:  # ISA-L's inflate: the same API as zlib, about 1.7x faster on these tarballs
    from isal import isal_zlib as zlib
except ImportError:  # pragma: no cover - platforms without an isal wheel
    import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import CacheError, IntegrityError, UnsafeArchiveError
from .manifest import ManifestFile

CHUNK = 1 << 20                  # copy / inflate / hash granularity
_MAX_META_READ = 4 << 20         # largest single read tarfile may ask for (PAX / GNU long names)
_MAX_PADDING = 16 << 20          # zero bytes tolerated after the end-of-archive marker
_GZIP_MAGIC = b"\x1f\x8b"
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
# Linux limits (limits.h): a whole path, with its NUL, and one name in it.
_PATH_MAX, _NAME_MAX = 4096, 255
_DAMAGED_HINT = "the file is damaged or incomplete; delete it and fetch it again"


@dataclass(frozen=True)
class UnpackLimits:
    max_members: int = 1000
    max_total_bytes: int = 4 * 1024**3     # unpacked bytes
    max_member_bytes: int = 2 * 1024**3


# ----------------------------------------------------------------------------- public API
def unpack_archive(archive: Path, dest: Path, *, limits: UnpackLimits = UnpackLimits(),
                   label: str | None = None, prescan: bool = True) -> list[ManifestFile]:
    """Unpack the gzip'd tar ``archive`` into the fresh directory ``dest``; return its manifest.

    With ``prescan`` (the default) every header is checked before anything is written, which
    costs one extra inflate pass; the second pass re-checks each member and must see exactly
    the members the scan saw.
    """
    label = label or str(archive)
    with open(archive, "rb") as raw:  # one open file for both passes: a swapped path cannot sneak in
        expected = _scan(raw, limits, label, str(dest)) if prescan else None
        raw.seek(0)
        return _extract(raw, Path(dest), limits, label, expected)


def unpack_stream(fileobj: BinaryIO, dest: Path, *, limits: UnpackLimits = UnpackLimits(),
                  label: str | None = None) -> list[ManifestFile]:
    """Unpack a gzip'd tar read sequentially from ``fileobj`` (e.g. while it downloads).

    Each member is checked before it is written. ``fileobj`` is read to its end on success
    (so a tee that hashes the download sees every byte); on failure reading stops early.
    ``fileobj.read`` is called from one helper thread (inflating overlaps hashing and writing).
    """
    label = label or str(getattr(fileobj, "name", None) or "<stream>")
    return _extract(fileobj, Path(dest), limits, label, None)


def declared_size(archive: Path, *, limits: UnpackLimits = UnpackLimits()) -> int | None:
    """Bytes the archive's headers say it unpacks to (one inflate pass, nothing written);
    None when the archive cannot be read or is refused. Used to say how much room is needed."""
    try:
        with open(archive, "rb") as raw:
            return sum(size for _name, _type, size in _scan(raw, limits, str(archive), "<scan>"))
    except (OSError, IntegrityError, UnsafeArchiveError):
        return None


# ----------------------------------------------------------------------------- gzip layer
def _damaged(label: str, reason: str) -> IntegrityError:
    return IntegrityError(f"{label}: {reason}", hint=_DAMAGED_HINT)


def _refuse(label: str, reason: str, member: str | None = None) -> UnsafeArchiveError:
    return UnsafeArchiveError(reason, archive=label, member=member)


def _describe_non_gzip(head: bytes) -> str:
    if not head:
        return "empty file: not a gzip'd tar"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "plain (uncompressed) tar: expected a gzip'd tar (.tgz)"
    if head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[:4] == b"(\xb5/\xfd":
        return "compressed with bzip2/xz/zstd: expected gzip"
    if head.lstrip()[:1] == b"<":
        return "looks like an HTML/XML page, not a gzip'd tar (a login or error page?)"
    return f"not a gzip file (starts with {head[:8].hex()})"


def _inflate(raw: BinaryIO, label: str) -> Iterator[bytes]:
    """Decompressed chunks (<= CHUNK) of the gzip stream ``raw``, read to its very end.

    Verifies each member's CRC32/ISIZE trailer (zlib does it with wbits=31), accepts
    concatenated gzip members and trailing zero bytes like gzip(1), refuses truncation and
    any other trailing data.
    """
    pending = raw.read(CHUNK)
    while 0 < len(pending) < 512:  # a socket may hand out a few bytes at a time
        more = raw.read(CHUNK)
        if not more:
            break
        pending += more
    if pending[:2] != _GZIP_MAGIC:
        raise _damaged(label, _describe_non_gzip(pending))
    while True:
        z = zlib.decompressobj(31)
        data = pending
        while not z.eof:
            if not data:
                data = raw.read(CHUNK)
                if not data:
                    out = z.decompress(b"", CHUNK)  # output zlib may still hold
                    if out:
                        yield out
                        continue
                    if z.eof:
                        break
                    raise _damaged(label, "the compressed data ends early (truncated download?)")
            try:
                out = z.decompress(data, CHUNK)
            except zlib.error as exc:
                raise _damaged(label, f"corrupt gzip data ({exc})") from None
            data = z.unconsumed_tail
            if out:
                yield out
        pending = z.unused_data
        # After a gzip member: the end, zero padding, or another member.
        while len(pending) < 2:
            more = raw.read(CHUNK)
            if not more:
                break
            pending += more
        if not pending:
            return
        if pending[:2] == _GZIP_MAGIC:
            continue
        padding = 0
        while pending:
            if pending.count(0) != len(pending):
                raise _damaged(label, "unexpected data after the end of the gzip stream")
            padding += len(pending)
            if padding > _MAX_PADDING:  # gzip(1) accepts any amount; we read no stream without a cap
                raise _refuse(label, f"more than {_MAX_PADDING} bytes of zero padding after the gzip stream")
            pending = raw.read(CHUNK)
        return


def _readahead(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """Run ``chunks`` in a helper thread (zlib releases the GIL), so inflating overlaps with
    hashing and writing in the caller. Exceptions are re-raised in the caller."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put((chunk, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item = (done, None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            item = (None, exc)
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="zoo-inflate", daemon=True)
    worker.start()
    try:
        while True:
            chunk, exc = q.get()
            if exc is not None:
                raise exc
            if chunk is done:
                return
            yield chunk
    finally:
        stop.set()
        worker.join()
        getattr(chunks, "close", lambda: None)()


class _Source:
    """Forward-only, seekable-looking file object over decompressed chunks, for tarfile "r:".

    ``last`` remembers the offset and bytes of the latest read, which lets the caller look at
    the block that ended tarfile's iteration.
    """

    def __init__(self, chunks: Iterator[bytes], label: str):
        self._chunks = chunks
        self._label = label
        self._buf = b""
        self._off = 0
        self._pos = 0
        self.last: tuple[int, bytes] = (-1, b"")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > _MAX_META_READ:
            raise _refuse(self._label, f"a read of {n} bytes was requested (oversized PAX/GNU header?)")
        parts = []
        need = n
        while need:
            avail = len(self._buf) - self._off
            if not avail:
                self._buf, self._off = next(self._chunks, b""), 0
                if not self._buf:
                    break
                continue
            take = min(avail, need)
            parts.append(self._buf if (take == len(self._buf)) else self._buf[self._off:self._off + take])
            self._off += take
            need -= take
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        self.last = (self._pos, out)
        self._pos += len(out)
        return out

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self._pos:
            raise _refuse(self._label, "the tar structure needs a backward seek (corrupt archive)")
        while self._pos < pos and self.read(min(pos - self._pos, CHUNK)):
            pass
        return self._pos

    def drain(self, limit: int) -> int:
        """Read to the end: the byte count if all zeros, -1 if not, -2 past ``limit`` bytes."""
        total = 0
        while True:
            data = self.read(CHUNK)
            if not data:
                return total
            total += len(data)
            if data.count(0) != len(data):
                return -1
            if total > limit:
                return -2


# ----------------------------------------------------------------------------- member checks
def _fold(path: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


class _Checker:
    """Every refusal decided from headers alone; one instance per pass."""

    def __init__(self, limits: UnpackLimits, label: str, dest: str):
        self.limits, self.label, self.dest = limits, label, dest
        self.count = 0
        self.declared = 0
        self.names: dict[str, tuple[str, str]] = {}  # folded path -> (kind, spelled path)

    def check(self, info: tarfile.TarInfo) -> tuple[tuple[str, ...], bool]:
        """(path components, is_dir) of an acceptable member; raise otherwise."""
        name = info.name

        def refuse(reason: str) -> UnsafeArchiveError:
            return _refuse(self.label, reason, name)

        self.count += 1
        if self.count > self.limits.max_members:
            raise refuse(f"more than {self.limits.max_members} members")
        if info.issym():
            raise refuse(f"symbolic link (to {info.linkname!r}); links are never unpacked")
        if info.islnk():
            raise refuse(f"hard link (to {info.linkname!r}); links are never unpacked")
        if info.ischr() or info.isblk():
            raise refuse("device file")
        if info.isfifo():
            raise refuse("fifo")
        if info.type == tarfile.GNUTYPE_SPARSE or getattr(info, "sparse", None) is not None:
            raise refuse("sparse file")
        is_dir = info.type == tarfile.DIRTYPE
        if not is_dir and info.type not in _FILE_TYPES:
            raise refuse(f"unsupported member type {info.type!r}")
        parts = self._parts(name, refuse)
        full = len(os.fsencode(self.dest)) + 1 + len("/".join(parts).encode())
        if full >= _PATH_MAX:  # unpacking would fail half-way with ENAMETOOLONG: refuse it up front
            raise refuse(f"its path under {self.dest} would be {full} bytes, over the system's {_PATH_MAX - 1}; "
                         "use a cache directory with a shorter path")
        if info.size < 0:
            raise refuse(f"invalid size {info.size}")
        if is_dir and info.size:
            raise refuse("directory entry carrying data")
        if info.size > self.limits.max_member_bytes:
            raise refuse(f"declares {info.size} bytes, more than the per-member limit "
                         f"of {self.limits.max_member_bytes}")
        self.declared += info.size
        if self.declared > self.limits.max_total_bytes:
            raise refuse(f"members declare more than {self.limits.max_total_bytes} unpacked bytes in total")
        if not parts:
            if is_dir:
                return parts, True  # "./": the unpack root itself
            raise refuse("empty file name")
        self._claim(parts, is_dir, refuse)
        data_filter = getattr(tarfile, "data_filter", None)
        if data_filter is not None:  # second opinion only
            try:
                data_filter(info, self.dest)
            except tarfile.FilterError as exc:
                raise refuse(f"rejected by tarfile's data filter ({exc})") from None
        return parts, is_dir

    @staticmethod
    def _parts(name: str, refuse) -> tuple[str, ...]:
        if not name:
            raise refuse("empty file name")
        if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
            raise refuse("absolute path")
        if "\\" in name:
            raise refuse("backslash in name")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise refuse("control character in name")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise refuse("name is not valid UTF-8") from None
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise refuse("path escapes the archive root")
        if len(name.encode()) >= _PATH_MAX or any(len(p.encode()) > _NAME_MAX for p in parts):
            raise refuse("name too long")
        return parts

    def _claim(self, parts: tuple[str, ...], is_dir: bool, refuse) -> None:
        for i in range(1, len(parts)):
            spelled = "/".join(parts[:i])
            kind, prev = self.names.setdefault(_fold(spelled), ("implicit", spelled))
            if kind == "file":
                raise refuse(f"its parent {prev!r} is a file")
            if prev != spelled:
                raise refuse(f"directory {spelled!r} collides with {prev!r} after case-folding")
        spelled = "/".join(parts)
        key = _fold(spelled)
        if key in self.names:
            kind, prev = self.names[key]
            if is_dir and kind == "implicit" and prev == spelled:
                self.names[key] = ("dir", spelled)
                return
            if prev == spelled:
                raise refuse(f"duplicate name (an earlier member is also {prev!r})")
            raise refuse(f"name collides with {prev!r} after case-folding and normalization")
        self.names[key] = ("dir" if is_dir else "file", spelled)


def _open_tar(src: _Source, label: str) -> tarfile.TarFile:
    try:
        return tarfile.TarFile(fileobj=src, mode="r", encoding="utf-8", errors="surrogateescape")
    except tarfile.TarError as exc:
        raise _refuse(label, f"not a tar archive inside the gzip stream ({exc})") from None


def _members(tar: tarfile.TarFile, src: _Source, label: str) -> Iterator[tarfile.TarInfo]:
    """tar's members, then proof that the archive ended properly (marker, zero padding,
    gzip trailer). Read errors are turned into refusals naming the member they follow."""
    current: str | None = None
    info = tar.next()  # the first member, already read by TarFile()
    while info is not None:
        current = info.name
        yield info
        try:
            info = tar.next()
        except tarfile.TarError as exc:
            reason = str(exc)
            if "unexpected end of data" in reason:
                raise _refuse(label, "the archive ends inside this member's data "
                                     "(its header declares more bytes than follow)", current) from None
            raise _refuse(label, f"corrupt tar header after this member ({reason})", current) from None
    where, block = src.last
    if where != tar.offset or len(block) != tarfile.BLOCKSIZE:
        raise _refuse(label, "the archive ends without an end-of-archive marker", current)
    if block.count(0) != len(block):
        raise _refuse(label, "an invalid header follows this member (its size field may lie "
                             "about the data that follows)", current)
    left = src.drain(_MAX_PADDING)
    if left == -1:
        raise _refuse(label, "unexpected data after the end-of-archive marker (a size field may lie)",
                      current)
    if left == -2:
        raise _refuse(label, f"more than {_MAX_PADDING} bytes of padding after the end-of-archive marker")


def _scan(raw: BinaryIO, limits: UnpackLimits, label: str, dest: str) -> list[tuple[str, bytes, int]]:
    """Check every header without writing anything; the (name, type, size) seen."""
    chunks = _inflate(raw, label)
    src = _Source(chunks, label)
    try:
        tar = _open_tar(src, label)
        checker = _Checker(limits, label, dest)
        seen = []
        for info in _members(tar, src, label):
            checker.check(info)
            seen.append((info.name, info.type, info.size))
        return seen
    finally:
        chunks.close()


# ----------------------------------------------------------------------------- writing
class _Writer:
    """Creates directories and files strictly inside ``dest``, through directory fds."""

    _DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    _FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

    def __init__(self, dest: Path):
        self.dest = dest
        self.use_fds = os.open in os.supports_dir_fd and os.mkdir in os.supports_dir_fd
        self.root = os.open(dest, self._DIR_FLAGS) if self.use_fds else -1
        self._cached: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        if self._cached:
            os.close(self._cached[1])
            self._cached = None
        if self.root >= 0:
            os.close(self.root)
            self.root = -1

    def directory(self, parts: tuple[str, ...]) -> int:
        """An fd of directory ``parts`` (created 0o755 as needed, never through a symlink)."""
        if not self.use_fds:
            path = self.dest
            for part in parts:
                path = path / part
                try:
                    os.mkdir(path, 0o755)
                except FileExistsError:
                    if not stat.S_ISDIR(os.lstat(path).st_mode):
                        raise
            return -1
        if self._cached and self._cached[0] == parts:
            return self._cached[1]
        fd = os.dup(self.root)
        try:
            for part in parts:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    created = True
                except FileExistsError:
                    created = False
                child = os.open(part, self._DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                if created:
                    os.fchmod(fd, 0o755)  # whatever the umask
        except BaseException:
            os.close(fd)
            raise
        if self._cached:
            os.close(self._cached[1])
        self._cached = (parts, fd)
        return fd

    def file(self, parts: tuple[str, ...]) -> int:
        parent = self.directory(parts[:-1])
        if not self.use_fds:
            return os.open(self.dest.joinpath(*parts), self._FILE_FLAGS, 0o600)
        return os.open(parts[-1], self._FILE_FLAGS, 0o600, dir_fd=parent)


def _make_dest(dest: Path) -> None:
    try:
        os.mkdir(dest, 0o755)
    except FileExistsError:
        st = os.lstat(dest)
        if not stat.S_ISDIR(st.st_mode):
            raise CacheError(f"staging path {dest} exists and is not a directory") from None
        if any(os.scandir(dest)):
            raise CacheError(f"staging directory {dest} is not empty",
                             "unpack only into a fresh staging directory") from None


def _extract(raw: BinaryIO, dest: Path, limits: UnpackLimits, label: str,
             expected: list[tuple[str, bytes, int]] | None) -> list[ManifestFile]:
    _make_dest(dest)
    writer: _Writer | None = None
    chunks = _readahead(_inflate(raw, label))
    try:
        src = _Source(chunks, label)
        tar = _open_tar(src, label)
        checker = _Checker(limits, label, str(dest))
        writer = _Writer(dest)
        manifest: list[ManifestFile] = []
        written = 0
        index = -1
        for index, info in enumerate(_members(tar, src, label)):
            parts, is_dir = checker.check(info)
            if expected is not None and (index >= len(expected)
                                         or expected[index] != (info.name, info.type, info.size)):
                raise _damaged(label, "the archive changed while it was being unpacked")
            if is_dir:
                if parts:
                    writer.directory(parts)
                continue
            size, digest = _copy_member(tar, info, writer, parts, label, limits, written)
            written += size
            manifest.append(ManifestFile("/".join(parts), size, digest))
        if expected is not None and index + 1 != len(expected):
            raise _damaged(label, "the archive changed while it was being unpacked")
        writer.close()
    except BaseException:
        chunks.close()
        if writer is not None:
            writer.close()
        shutil.rmtree(dest, ignore_errors=True)
        raise
    chunks.close()
    return sorted(manifest, key=lambda m: m.path)


def _copy_member(tar: tarfile.TarFile, info: tarfile.TarInfo, writer: _Writer, parts: tuple[str, ...],
                 label: str, limits: UnpackLimits, written_before: int) -> tuple[int, str]:
    """Write one regular file: O_EXCL create, copy + sha256 in one pass, count every byte."""
    source = tar.extractfile(info)
    fd = writer.file(parts)
    try:
        digest = hashlib.sha256()
        size = 0
        allowed = min(info.size, limits.max_member_bytes, limits.max_total_bytes - written_before)
        while True:
            try:
                chunk = source.read(CHUNK)
            except tarfile.ReadError:
                raise _refuse(label, "the archive ends inside this member's data "
                                     f"(its header declares {info.size} bytes)", info.name) from None
            if not chunk:
                break
            size += len(chunk)
            if size > allowed:
                raise _refuse(label, f"more data than allowed ({allowed} bytes)", info.name)
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        if size != info.size:
            raise _refuse(label, f"only {size} of the {info.size} bytes its header declares",
                          info.name)
        os.fchmod(fd, 0o755 if info.mode & 0o111 else 0o644)  # no setuid/setgid/sticky
        if 0 <= info.mtime < 2**33 and os.utime in os.supports_fd:
            os.utime(fd, (info.mtime, info.mtime))
    finally:
        os.close(fd)
    return size, digest.hexdigest()


# ----------------------------------------------------------------------------- helpers
