"""Which files are images, and how every command reads them: one set of rules for `classify`,
`eval`, `finetune` and `export --calibration`.

    found = scan_folder(Path("photos"), recursive=True)   # images, and what was passed over
    data = read_image_bytes(found.images[0])              # a regular file, at most MAX_IMAGE_BYTES

The rules:

* an image is a regular file (a link to one is fine) whose name is not hidden (``.DS_Store``,
  ``.ipynb_checkpoints``) and ends in one of ``IMAGE_SUFFIXES``, the formats every reader here
  decodes (``zoo.data.images``: JPEG through simplejpeg, the rest through Pillow);
* a fifo, a device, a socket, a dangling or looping link is never opened for reading: it is
  reported by name, as is a file with another suffix, never skipped silently and never left to
  hang or crash a later reader;
* a file larger than ``MAX_IMAGE_BYTES`` is refused before it is read, so memory never grows
  with what a path happens to name;
* folders are walked without following links to folders (no loops), in sorted order;
* a class name (a folder name) must survive every file the tool writes (``labels.txt``,
  ``finetune.json``): valid UTF-8, no control characters, no leading or trailing spaces.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

# What every reader decodes (Pillow's formats; JPEG also through simplejpeg, as tf.io.decode_jpeg).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Larger files are refused unread: a 50-megapixel PNG is ~100 MB; Pillow's pixel limit then applies.
MAX_IMAGE_BYTES = 256 << 20


def is_hidden(name: str) -> bool:
    """Dot files and folders: ``.DS_Store``, ``.ipynb_checkpoints``, editors' swap files."""
    return name.startswith(".")


def has_image_suffix(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def file_problem(path: Path, limit: int | None = MAX_IMAGE_BYTES) -> str | None:
    """Why ``path`` cannot be read as a data file (None: a regular file, at most ``limit`` bytes)."""
    try:
        info = os.stat(path)  # follows a link: a link to a regular file is a regular file
    except OSError as exc:
        return _os_reason(exc, path)
    except ValueError:  # an embedded NUL
        return "not a valid path"
    return _mode_problem(info, limit)


def _mode_problem(info: os.stat_result, limit: int | None = MAX_IMAGE_BYTES) -> str | None:
    if stat.S_ISDIR(info.st_mode):
        return "a directory, not an image"
    if not stat.S_ISREG(info.st_mode):
        kind = ("a fifo" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a special file")
        return f"{kind}, not a regular file"
    if limit is not None and info.st_size > limit:
        return f"{info.st_size / 2**20:.0f} MiB, larger than the {limit >> 20} MiB an image may have"
    return None


def _os_reason(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ELOOP:
        return "a link that loops"
    if exc.errno == errno.ENOENT:
        return "a dangling link" if os.path.islink(path) else "file not found"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


class ImageFileError(DataError):
    """A path that cannot be read as an image file; ``reason`` says why in a few words."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def read_image_bytes(path: Path | str, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of an image file, or ImageFileError: a fifo or device is never waited on
    (opened non-blocking and checked before reading), a file over ``limit`` never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageFileError(path, _os_reason(exc, Path(path))) from None
    except ValueError:  # an embedded NUL
        raise ImageFileError(path, "not a valid path") from None
    try:
        problem = _mode_problem(os.fstat(fd), limit)
        if problem is not None:
            raise ImageFileError(path, problem)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read(limit + 1)
    except OSError as exc:
        raise ImageFileError(path, exc.strerror or str(exc)) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:  # grew while being read
        raise ImageFileError(path, f"larger than the {limit >> 20} MiB an image may have")
    return data


@dataclass
class Scan:
    """What a folder holds: image files in sorted order, and everything passed over, with why."""

    images: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    def describe_rejected(self, limit: int = 5) -> str:
        shown = "\n  ".join(f"{path}: {why}" for path, why in self.rejected[:limit])
        more = f"\n  ... and {len(self.rejected) - limit} more" if len(self.rejected) > limit else ""
        return f"\n  {shown}{more}"


def scan_folder(folder: Path, *, recursive: bool = False) -> Scan:
    """Every image file in ``folder`` (and its sub-folders when ``recursive``), sorted by path.

    Hidden files and folders are ignored. Links to folders are not followed. Anything else
    that is not an image file lands in ``rejected`` with the reason.
    """
    found = Scan()
    _scan(Path(folder), recursive, found)
    found.images.sort()
    found.rejected.sort()
    return found


def _scan(folder: Path, recursive: bool, found: Scan) -> None:
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        found.rejected.append((folder, _os_reason(exc, folder)))
        return
    for entry in entries:
        if is_hidden(entry.name):
            continue
        path = folder / entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                _scan(path, recursive, found)
            continue  # not recursive: sub-folders are not files of this folder
        if entry.is_symlink() and os.path.isdir(path):
            if recursive:
                found.rejected.append((path, "a link to a folder (not followed)"))
            continue
        if not has_image_suffix(entry.name):
            found.rejected.append((path, f"not an image file (expected {', '.join(IMAGE_SUFFIXES)})"))
            continue
        problem = file_problem(path)
        if problem is None:
            found.images.append(path)
        else:
            found.rejected.append((path, problem))


def list_children(path: Path) -> list[tuple[str, bool]]:
    """(name, is a folder) for each visible entry of ``path``, sorted; a link that loops or dangles
    counts as a file (and is then refused by whoever reads it)."""
    out = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if is_hidden(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                out.append((entry.name, is_dir))
    except OSError as exc:
        raise DataError(f"cannot list {path}: {exc.strerror or exc}") from None
    return sorted(out)


def check_class_name(name: str, where: Path | str) -> str:
    """``name`` if it can name a class in every file we write; a DataError naming ``where`` otherwise."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise DataError(f"{where}: the folder name {shown!r} is not valid UTF-8",
                        hint="rename the folder: class names are written to labels.txt and finetune.json") from None
    if not name or name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise DataError(f"{where}: the folder name {name!r} has control characters or leading/trailing spaces",
                        hint="rename the folder: class names are written one per line to labels.txt")
    return name
