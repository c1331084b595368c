"""Builders of upstream-like and hostile tarballs (standard library only).

Upstream-like builders mirror what the real MobileNet tarballs contain (see
/work/shared/reference/SOURCES.md) with small deterministic contents. Hostile builders each
return the bytes of a gzip'd tar (or of something that only pretends to be one) together with
the member name an unpacker should name when it refuses; see ``HOSTILE``.

Everything is deterministic: same arguments, same bytes.
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path
from typing import Callable

MTIME = 1533168000  # 2018-08-02, the v1 release date

# Real member sizes of mobilenet_v1_1.0_224.tgz (SOURCES.md); eval.pbtxt is a guess.
V1_SIZES = {
    ".ckpt.data-00000-of-00001": 67_903_136,
    ".ckpt.index": 19_954,
    ".ckpt.meta": 3_386_971,
    "_frozen.pb": 17_085_200,
    "_eval.pbtxt": 38_000,
    "_info.txt": 83,
    ".tflite": 16_901_128,
}
_EXP = bytes(0x3C + (b & 3) | (b & 0x80) for b in range(256))  # float32 exponent byte of |x| ~ 1e-2..1


# ----------------------------------------------------------------------------- content
def weights(seed: str, size: int) -> bytes:
    """Deterministic bytes that look like float32 tensors: compress to ~90% like real checkpoints."""
    return _Weights(seed, size).read()


class _Weights(io.RawIOBase):
    """A readable stream of ``weights(seed, size)`` that never holds more than 1 MiB."""

    def __init__(self, seed: str, size: int):
        self._rng = random.Random(seed)
        self._left = size
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._left + len(self._buf)
        while len(self._buf) < n and self._left:
            block = bytearray(self._rng.randbytes(min(self._left, 1 << 20)))
            block[3::4] = bytes(block[3::4]).translate(_EXP)
            self._left -= len(block)
            self._buf += bytes(block)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def _text(seed: str, size: int) -> bytes:
    line = f"# {seed}\n".encode()
    return (line * (size // len(line) + 1))[:size]


# ----------------------------------------------------------------------------- upstream-like
def upstream_v1_files(stem: str = "mobilenet_v1_1.0_224", size_scale: float = 1e-4) -> dict[str, bytes]:
    """Member name (as in the tarball, ``./`` prefix) -> contents, sizes scaled from the real ones."""
    files = {}
    for suffix, real in V1_SIZES.items():
        size = max(1, int(real * size_scale)) if suffix != "_info.txt" else real
        name = f"./{stem}{suffix}"
        if suffix in ("_info.txt", "_eval.pbtxt"):
            files[name] = _text(name, size)
        else:
            files[name] = weights(name, size)
    return files


def upstream_v3_files(stem: str = "v3-large_224_1.0_float", step: int = 540000,
                      size_scale: float = 1e-4) -> dict[str, bytes]:
    """Member name -> contents for a v3 tarball: one top-level directory named after the stem."""
    big = max(1, int(21_000_000 * size_scale))
    ckpt = f"model.ckpt-{step}"
    return {
        f"{stem}/ema/checkpoint": f'model_checkpoint_path: "model-{step}"\n'.encode(),
        f"{stem}/ema/model-{step}.data-00000-of-00001": weights("ema.data", big),
        f"{stem}/ema/model-{step}.index": weights("ema.index", 1500),
        f"{stem}/pristine/checkpoint": f'model_checkpoint_path: "{ckpt}"\n'.encode(),
        f"{stem}/pristine/{ckpt}.data-00000-of-00001": weights("pristine.data", big),
        f"{stem}/pristine/{ckpt}.index": weights("pristine.index", 1500),
        f"{stem}/pristine/{ckpt}.meta": weights("pristine.meta", 4000),
        f"{stem}/{stem}.pb": weights("frozen", big // 4),
        f"{stem}/{stem}.tflite": weights("tflite", big // 4),
    }


def _dirs_of(names) -> list[str]:
    dirs = []
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in ("", ".") and d not in dirs:
                dirs.append(d)
    return dirs


def tar_gz(files: dict[str, bytes], *, dirs: list[str] | None = None, root_dir: bool = False,
           gnu: bool = True) -> bytes:
    """A gzip'd tar like GNU tar makes: optional ``./`` entry, directories first, 0644 files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT if gnu else tarfile.PAX_FORMAT) as tar:
        if root_dir:
            tar.addfile(_info(".", tarfile.DIRTYPE, mode=0o755))
        for d in (dirs if dirs is not None else _dirs_of(files)):
            tar.addfile(_info(d, tarfile.DIRTYPE, mode=0o755))
        for name, data in files.items():
            tar.addfile(_info(name, size=len(data)), io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def upstream_v1_tarball(stem: str = "mobilenet_v1_1.0_224", size_scale: float = 1e-4) -> bytes:
    """Bytes of a v1/v2-style tarball: ``./`` then ``./<stem>.ckpt.*``, ``_frozen.pb``, ... ``.tflite``."""
    return tar_gz(upstream_v1_files(stem, size_scale), dirs=[], root_dir=True)


def upstream_v3_tarball(stem: str = "v3-large_224_1.0_float", size_scale: float = 1e-4) -> bytes:
    """Bytes of a v3-style tarball: ``<stem>/``, ``<stem>/ema/...``, ``<stem>/pristine/...``, .pb, .tflite."""
    return tar_gz(upstream_v3_files(stem, size_scale=size_scale))


def write_upstream_v1_tarball(path: Path, total_bytes: int, stem: str = "mobilenet_v1_1.0_224",
                              compresslevel: int = 6) -> Path:
    """Stream a v1-style tarball of about ``total_bytes`` unpacked bytes to ``path`` (for
    benchmarks: 200 MB is never held in memory). Member proportions follow the real v1 1.0_224."""
    scale = total_bytes / sum(V1_SIZES.values())
    with open(path, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", compresslevel=compresslevel,
                                                mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_info(".", tarfile.DIRTYPE, mode=0o755))
        for suffix, real in V1_SIZES.items():
            name = f"./{stem}{suffix}"
            size = real if suffix == "_info.txt" else int(real * scale)
            tar.addfile(_info(name, size=size), _Weights(name, size))
    return Path(path)


def _info(name: str, type: bytes = tarfile.REGTYPE, *, size: int = 0, mode: int = 0o644,
          linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = type, size, mode, MTIME
    info.uid = info.gid = 1000
    info.uname = info.gname = "builder"
    info.linkname = linkname
    return info


# ----------------------------------------------------------------------------- hostile
_END = b"\0" * (2 * tarfile.BLOCKSIZE)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def raw_tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.GNU_FORMAT,
            end: bytes = _END) -> bytes:
    """Hand-assembled tar: each header exactly as given (its ``size`` field may lie about the
    data that follows), then the data padded to 512, then ``end``. No record padding."""
    out = bytearray()
    for info, data in members:
        out += info.tobuf(format=fmt, encoding="utf-8", errors="surrogateescape")
        out += _pad(data)
    return bytes(out + end)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _one(info: tarfile.TarInfo, data: bytes = b"", fmt: int = tarfile.GNU_FORMAT) -> bytes:
    ok = _info("ok.txt", size=3)
    return gz(raw_tar((ok, b"ok\n"), (info, data), fmt=fmt))


def absolute_path() -> bytes:
    return _one(_info("/tmp/zoo-evil", size=5), b"evil\n")


def dotdot_traversal() -> bytes:
    return _one(_info("../evil", size=5), b"evil\n")


def dotdot_nested() -> bytes:
    return _one(_info("./model/../../evil", size=5), b"evil\n")


def pax_path_traversal() -> bytes:
    """The ustar name is harmless; the PAX ``path`` record, which wins, escapes."""
    info = _info("harmless", size=5)
    info.pax_headers = {"path": "../evil"}
    return _one(info, b"evil\n", fmt=tarfile.PAX_FORMAT)


def gnu_longname_traversal() -> bytes:
    return _one(_info("../" + "x" * 120, size=5), b"evil\n")


def path_too_long_when_unpacked() -> bytes:
    """Every name within NAME_MAX and the whole within PATH_MAX, but the member's path under
    any cache directory would pass PATH_MAX (4096): unpacking would fail with ENAMETOOLONG."""
    return _one(_info("/".join(["d" * 200] * 20), size=5), b"deep\n")


def symlink_outside() -> bytes:
    """A symlink pointing out, then a file written through it (the classic two-step)."""
    return gz(raw_tar((_info("link", tarfile.SYMTYPE, linkname="/tmp"), b""),
                      (_info("link/zoo-evil", size=5), b"evil\n")))


def symlink_inside() -> bytes:
    return gz(raw_tar((_info("model.tflite", size=4), b"TFL3"),
                      (_info("alias.tflite", tarfile.SYMTYPE, linkname="model.tflite"), b"")))


def hardlink() -> bytes:
    return gz(raw_tar((_info("model.tflite", size=4), b"TFL3"),
                      (_info("copy.tflite", tarfile.LNKTYPE, linkname="model.tflite"), b"")))


def hardlink_outside() -> bytes:
    return _one(_info("passwd", tarfile.LNKTYPE, linkname="/etc/passwd"))


def char_device() -> bytes:
    info = _info("null", tarfile.CHRTYPE)
    info.devmajor, info.devminor = 1, 3
    return _one(info)


def block_device() -> bytes:
    info = _info("sda", tarfile.BLKTYPE)
    info.devmajor, info.devminor = 8, 0
    return _one(info)


def fifo() -> bytes:
    return _one(_info("pipe", tarfile.FIFOTYPE))


def unknown_type() -> bytes:
    return _one(_info("volume", b"V"))


def duplicate_names() -> bytes:
    return gz(raw_tar((_info("./model.tflite", size=4), b"TFL3"), (_info("model.tflite", size=4), b"EVIL")))


def casefold_duplicates() -> bytes:
    return gz(raw_tar((_info("model.tflite", size=4), b"TFL3"), (_info("Model.TFLite", size=4), b"EVIL")))


def file_then_dir_child() -> bytes:
    """``a`` is a file, then ``a/b`` needs it to be a directory."""
    return gz(raw_tar((_info("model", size=4), b"TFL3"), (_info("model/x", size=4), b"EVIL")))


def too_many_members(n: int = 1001) -> bytes:
    return gz(raw_tar(*[(_info(f"f{i:04d}", size=1), b"x") for i in range(n)]))


def huge_declared_size(size: int = 10 * 1024**3) -> bytes:
    """A header declaring 10 GiB (GNU base-256 size field) with almost no data behind it."""
    return _one(_info("huge.bin", size=size), b"x" * 100)


def huge_total(members: int = 3, each: int = 1000) -> bytes:
    """``members`` honest files of ``each`` bytes: use with a total limit below their sum."""
    return gz(raw_tar(*[(_info(f"part{i}", size=each), bytes([i]) * each) for i in range(members)]))


def header_smaller_than_data() -> bytes:
    """Header says 10 bytes; 2000 bytes of data follow (tarfile then meets garbage where the
    next header should be)."""
    data = bytes(range(256)) * 8
    return gz(raw_tar((_info("ok.txt", size=3), b"ok\n"), (_info("small.bin", size=10), data)))


def header_smaller_than_data_short() -> bytes:
    """Header says 10 bytes; 600 follow: the garbage is one block, then a valid end marker."""
    return gz(raw_tar((_info("small.bin", size=10), b"\x7f" * 600)))


def header_larger_than_data() -> bytes:
    """Header says 1 MiB; only 1000 bytes (and the end marker) follow."""
    return gz(raw_tar((_info("ok.txt", size=3), b"ok\n"), (_info("big.bin", size=1 << 20), b"y" * 1000)))


def data_after_end_marker() -> bytes:
    return gz(raw_tar((_info("ok.txt", size=3), b"ok\n")) + b"\x01" * 4096)


def no_end_marker() -> bytes:
    return gz(raw_tar((_info("ok.txt", size=512), b"o" * 512), end=b""))


def setuid_file() -> bytes:
    """Allowed: setuid/setgid/sticky bits must be cleared on unpack (tool 0o7755 -> 0o755,
    data 0o6666 -> 0o644)."""
    return gz(raw_tar((_info("tool", size=5, mode=0o7755), b"tool\n"),
                      (_info("data", size=4, mode=0o6666), b"data")))


def not_gzip() -> bytes:
    return b"this is not a tarball, just some text\n" * 20


def html_page() -> bytes:
    return b"<!DOCTYPE html><html><body>Sign in to continue</body></html>\n"


def empty() -> bytes:
    return b""


def plain_tar() -> bytes:
    return gzip.decompress(upstream_v1_tarball())


def truncated_gzip() -> bytes:
    data = upstream_v1_tarball()
    return data[: len(data) // 2]


def truncated_gzip_trailer() -> bytes:
    """All of the tar is there; only the gzip CRC/length trailer is missing."""
    return upstream_v1_tarball()[:-8]


def corrupt_gzip_crc() -> bytes:
    data = bytearray(upstream_v1_tarball())
    data[-8] ^= 0xFF
    return bytes(data)


def gzip_trailing_garbage() -> bytes:
    return upstream_v1_tarball() + b"GARBAGE!"


def gzipped_garbage() -> bytes:
    return gz(b"\x42" * 4096)


# name -> (builder, member the refusal must name (None: no member to blame), limits overrides)
HOSTILE: dict[str, tuple[Callable[[], bytes], str | None, dict]] = {
    "absolute_path": (absolute_path, "/tmp/zoo-evil", {}),
    "dotdot_traversal": (dotdot_traversal, "../evil", {}),
    "dotdot_nested": (dotdot_nested, "./model/../../evil", {}),
    "pax_path_traversal": (pax_path_traversal, "../evil", {}),
    "gnu_longname_traversal": (gnu_longname_traversal, "../" + "x" * 120, {}),
    "path_too_long_when_unpacked": (path_too_long_when_unpacked, "/".join(["d" * 200] * 20), {}),
    "symlink_outside": (symlink_outside, "link", {}),
    "symlink_inside": (symlink_inside, "alias.tflite", {}),
    "hardlink": (hardlink, "copy.tflite", {}),
    "hardlink_outside": (hardlink_outside, "passwd", {}),
    "char_device": (char_device, "null", {}),
    "block_device": (block_device, "sda", {}),
    "fifo": (fifo, "pipe", {}),
    "unknown_type": (unknown_type, "volume", {}),
    "duplicate_names": (duplicate_names, "model.tflite", {}),
    "casefold_duplicates": (casefold_duplicates, "Model.TFLite", {}),
    "file_then_dir_child": (file_then_dir_child, "model/x", {}),
    "too_many_members": (too_many_members, "f1000", {}),
    "huge_declared_size": (huge_declared_size, "huge.bin", {}),
    "huge_total": (huge_total, "part2", {"max_total_bytes": 2500}),
    "header_smaller_than_data": (header_smaller_than_data, "small.bin", {}),
    "header_smaller_than_data_short": (header_smaller_than_data_short, "small.bin", {}),
    "header_larger_than_data": (header_larger_than_data, "big.bin", {}),
    "data_after_end_marker": (data_after_end_marker, "ok.txt", {}),
    "no_end_marker": (no_end_marker, "ok.txt", {}),
    "gzipped_garbage": (gzipped_garbage, None, {}),
}

# Not a valid gzip'd tar at all: refused naming the archive and the reason, no member.
DAMAGED: dict[str, Callable[[], bytes]] = {
    "not_gzip": not_gzip,
    "html_page": html_page,
    "empty": empty,
    "plain_tar": plain_tar,
    "truncated_gzip": truncated_gzip,
    "truncated_gzip_trailer": truncated_gzip_trailer,
    "corrupt_gzip_crc": corrupt_gzip_crc,
    "gzip_trailing_garbage": gzip_trailing_garbage,
}


def write(path: Path, data: bytes) -> Path:
    Path(path).write_bytes(data)
    return Path(path)


class Trickle(io.RawIOBase):
    """A non-seekable stream handing out at most ``step`` bytes a read, like a socket."""

    def __init__(self, data: bytes, step: int = 7919):
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n

    @property
    def consumed(self) -> int:
        return self._pos


