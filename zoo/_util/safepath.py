"""Paths computed from untrusted names, and files found on shared ground.

Three rules, each enforced here and nowhere else:

* **a name is one plain path component**: catalog ids, release names and every component
  of a mirror-relative URL path match ``SAFE_NAME`` (checked when the catalog is loaded,
  and again by :func:`inside` whenever a path is computed);
* **a computed path provably stays under its root**: :func:`inside` joins the components,
  then walks them with ``lstat`` and refuses any symlink between the root and the target,
  and finally compares the resolved path with the resolved root;
* **nothing found in a shared directory is followed**: :func:`open_private` opens with
  ``O_NOFOLLOW`` and insists on a regular file with one link that we own, and
  :func:`remove_tree` never follows a link (a link is unlinked, its target untouched).

The cache root itself may be a symlink (the user chose it); what is *inside* it is
shared ground that another user or a dead process may have planted things in.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from pathlib import Path

from ..errors import CacheError

# One path component: starts with a letter or digit, then letters, digits, '.', '_', '-', '+'.
# No '/', no '\\', no NUL or control characters, never '.' or '..', at most 128 characters.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# A mirror-relative component may also hold ':' (host:port), '@', '~', '%' and '=' (not first).
SAFE_URL_PART = re.compile(r"[A-Za-z0-9_~%=+-][A-Za-z0-9._~%=:@+-]{0,254}")

_BAD_COMPONENT = re.compile(r"[/\\\x00-\x1f\x7f]")  # a separator or control character in one component
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and bool(SAFE_NAME.fullmatch(name))


def unsafe_url_path(path: str) -> str | None:
    """Why the path part of a URL cannot become a mirror-relative path (None: it can)."""
    parts = [p for p in path.split("/") if p != ""]
    if not parts or path.endswith("/"):
        return "the URL names no file (it is empty or ends in '/')"
    for part in parts:
        if part in (".", ".."):
            return f"the URL path contains {part!r}"
        if not SAFE_URL_PART.fullmatch(part):
            return f"the URL path component {part!r} has characters a file name cannot safely hold"
    return None


def inside(root: Path, *parts: str, what: str = "path") -> Path:
    """``root/parts...``, proven to stay under ``root`` (CacheError otherwise).

    Each part must be a single safe component; no existing component below ``root`` may be
    a symlink; the resolved result must be below the resolved root. The target itself need
    not exist.
    """
    root = Path(root)
    path = root
    for part in parts:
        if not isinstance(part, str) or _BAD_COMPONENT.search(part) or part in ("", ".", ".."):
            raise CacheError(f"refusing {what} {'/'.join(map(str, parts))!r}: {part!r} is not a plain file name",
                             "names in a catalog must be plain names (letters, digits, '.', '_', '-')")
        path = path / part
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue  # nothing there (yet): nothing to follow
        if stat.S_ISLNK(st.st_mode):
            raise CacheError(f"refusing {what} {path}: it is a symbolic link, and nothing in {root} is "
                             "followed through a link",
                             f"someone planted a link in the shared directory; remove the link itself "
                             f"(`rm {path}`) after checking who made it") from None
    try:
        real_root = root.resolve()
        real = path.resolve()
    except (OSError, RuntimeError):
        raise CacheError(f"refusing {what} {path}: it cannot be resolved") from None
    if real != real_root and real_root not in real.parents:
        raise CacheError(f"refusing {what} {path}: it resolves to {real}, outside {real_root}")
    return path


def check_inside(root: Path, path: Path, what: str = "path") -> Path:
    """Like :func:`inside` for a path already joined (its components below ``root``)."""
    try:
        rel = Path(path).relative_to(root)
    except ValueError:
        raise CacheError(f"refusing {what} {path}: it is not inside {root}") from None
    return inside(root, *rel.parts, what=what)


def open_private(path: Path, flags: int, *, mode: int = 0o666, adopt: bool = True) -> int:
    """Open a file in a shared directory without following links; return the fd.

    The file must be a regular file with a single link (a hard link would let us write
    into someone else's file); when ``adopt`` it must also be ours (same uid). ``O_TRUNC``
    is applied only after those checks passed.
    """
    truncate = bool(flags & os.O_TRUNC)
    try:
        fd = os.open(path, (flags & ~os.O_TRUNC) | NOFOLLOW | CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheError(f"refusing to open {path}: it is a symbolic link",
                             "a link in the cache's private folders is never followed; remove it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CacheError(f"refusing to open {path}: not a regular file", "remove it")
        if st.st_nlink != 1:
            raise CacheError(f"refusing to open {path}: it has {st.st_nlink} hard links, so writing it "
                             "would change another file too", "remove it")
        if adopt and hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise CacheError(f"refusing to open {path}: it belongs to another user (uid {st.st_uid})",
                             "leave it to its owner, or remove it if its owner is gone")
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path: Path, mode: str, **kwargs):
    """:func:`open_private` as a Python file object; ``mode`` is "rb", "r+b", "wb" or "ab"."""
    flags = {"rb": os.O_RDONLY, "r+b": os.O_RDWR, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND}[mode]
    return os.fdopen(open_private(path, flags, **kwargs), mode)


def read_capped(path: Path, cap: int, *, private: bool = False) -> bytes:
    """The bytes of a small state file, read without following links and at most ``cap`` long.

    FileNotFoundError when missing; CacheError when it is a link, not a regular file, or too big,
    and with ``private`` when another user owns it or anyone but its owner may write it.
    """
    with open_file(path, "rb", adopt=private) as fh:
        if private and os.fstat(fh.fileno()).st_mode & 0o022:
            raise CacheError(f"refusing to read {path}: others may write it", "make it private (chmod 600)")
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise CacheError(f"{path} is larger than {cap} bytes; it is not a file this program wrote",
                         "move it away")
    return data


def is_plain_file(path: Path, *, own: bool = True) -> bool:
    """A regular file with one link (and ours): the only kind of leftover we ever adopt."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return False
    return not own or not hasattr(os, "geteuid") or st.st_uid == os.geteuid()


def remove_tree(path: Path) -> None:
    """Remove a file, a link (never its target) or a directory tree; missing is fine.

    Links inside the tree are unlinked, not followed (``shutil.rmtree`` on POSIX works
    through directory fds). Read-only bits on our own directories do not stop us.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        path.unlink(missing_ok=True)
        return

    def _onerror(func, p, exc_info):
        exc = exc_info[1]
        if isinstance(exc, FileNotFoundError):
            return
        if isinstance(exc, PermissionError) and func in (os.unlink, os.rmdir, os.remove):
            parent = os.path.dirname(p)
            try:
                if not os.path.islink(parent):
                    os.chmod(parent, 0o700)
                func(p)
                return
            except OSError:
                pass
        raise exc

    shutil.rmtree(path, onerror=_onerror)
