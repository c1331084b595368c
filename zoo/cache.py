"""The model cache on disk: entries, manifests, trusted digests, partials and clean-up.

Layout: see ``zoo.layout``. The rules that keep it safe:

* an entry directory appears only by one atomic rename of a fully verified staging
  directory, so a reader either sees a whole entry or none;
* every writer works in private names (``<id>@<release>.<pid>.<random>``) on the same
  filesystem, so two racing processes never write the same file, with or without the lock;
* leftovers of dead processes (partials, staging dirs) are recognised by their pid and
  reclaimed or removed; a partial download is adopted by a later run and resumed;
* file locks (``filelock``, released by the kernel when a process dies, even by SIGKILL)
  only save duplicate work; they are never what keeps the cache correct.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import layout
from .atomic import atomic_write_json, read_json
from .catalog import Entry, Release
from .errors import CacheError

MANIFEST_VERSION = 1


# ----------------------------------------------------------------- small primitives
def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_name(entry: Entry, release: Release) -> str:
    """A name no other process will pick: model, release, our pid and a random tag."""
    return f"{entry.id}@{release.release}.pid{os.getpid()}.{secrets.token_hex(4)}"


_OWNER = re.compile(r"\.pid(\d+)\.")


def owner_pid(name: str) -> int | None:
    """The pid embedded by ``private_name`` (None if the name is not one of ours)."""
    match = _OWNER.search(name)
    return int(match.group(1)) if match else None


def remove_tree(path: Path) -> None:
    """Remove a file or directory tree; missing is fine. Read-only bits do not stop us."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return
    if path.exists():
        def _onerror(func, p, exc_info):
            os.chmod(p, 0o700)
            func(p)

        shutil.rmtree(path, onerror=_onerror)


# ----------------------------------------------------------------- manifests
@dataclass(frozen=True)
class Manifest:
    """What a verified entry holds; written at unpack time, checked by `verify`."""

    model_id: str
    release: str
    url: str
    archive_sha256: str
    archive_size: int
    files: tuple[tuple[str, int, str], ...]   # (path, size, sha256)
    trusted_on_first_use: bool
    created_at: float
    archive_kept: bool

    def to_json(self) -> dict:
        return {
            "version": MANIFEST_VERSION, "model_id": self.model_id, "release": self.release, "url": self.url,
            "archive": {"sha256": self.archive_sha256, "size": self.archive_size, "kept": self.archive_kept},
            "files": [{"path": p, "size": s, "sha256": h} for p, s, h in self.files],
            "trusted_on_first_use": self.trusted_on_first_use, "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Manifest":
        return cls(
            model_id=data["model_id"], release=data["release"], url=data["url"],
            archive_sha256=data["archive"]["sha256"], archive_size=int(data["archive"]["size"]),
            files=tuple((f["path"], int(f["size"]), f["sha256"]) for f in data["files"]),
            trusted_on_first_use=bool(data.get("trusted_on_first_use")),
            created_at=float(data.get("created_at", 0)), archive_kept=bool(data["archive"].get("kept")),
        )



def read_manifest(entry_dir: Path) -> Manifest | None:
    data = read_json(entry_dir / layout.MANIFEST)
    if not isinstance(data, dict):
        return None
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def _listed_files(manifest: Manifest):
    from .unpack import ManifestFile

    return [ManifestFile(path, size, sha) for path, size, sha in manifest.files]


def cheap_problems(entry_dir: Path, manifest: Manifest) -> list[str]:
    """Size-only check of every file (stat calls, no hashing): run on every cache hit."""
    from .unpack import verify_tree

    problems = verify_tree(entry_dir / layout.MODEL_DIR, _listed_files(manifest), deep=False, report_extra=False)
    if manifest.archive_kept:
        try:
            if (entry_dir / layout.ARCHIVE).stat().st_size != manifest.archive_size:
                problems.append(f"{layout.ARCHIVE}: wrong size")
        except OSError:
            problems.append(f"{layout.ARCHIVE}: missing")
    return problems


def deep_problems(entry_dir: Path, manifest: Manifest, expected_sha256: str | None) -> list[str]:
    """Re-hash the archive and every unpacked file against the manifest (what `verify` does)."""
    from .hashing import sha256_file
    from .unpack import verify_tree

    problems = cheap_problems(entry_dir, manifest)
    if problems:
        return problems
    if expected_sha256 and manifest.archive_sha256 != expected_sha256:
        problems.append(f"entry was made from sha256 {manifest.archive_sha256}, the catalog pins {expected_sha256}")
    if manifest.archive_kept:
        actual = sha256_file(entry_dir / layout.ARCHIVE)
        if actual != manifest.archive_sha256:
            problems.append(f"{layout.ARCHIVE}: sha256 {actual}, expected {manifest.archive_sha256}")
    return problems + verify_tree(entry_dir / layout.MODEL_DIR, _listed_files(manifest), deep=True)


# ----------------------------------------------------------------- trust on first use
class TrustStore:
    """Digests recorded the first time an unpinned model was fetched (``trusted.json``)."""

    def __init__(self, cache: Path):
        self.path = cache / layout.TRUST_FILE

    def get(self, entry: Entry, release: Release) -> str | None:
        data = read_json(self.path) or {}
        record = data.get(f"{entry.id}@{release.release}")
        if isinstance(record, dict) and record.get("url") == release.url:
            return record.get("sha256")
        return None

    def record(self, entry: Entry, release: Release, sha256: str, size: int) -> None:
        from filelock import FileLock

        with FileLock(str(self.path) + ".lock", timeout=60):
            data = read_json(self.path) or {}
            key = f"{entry.id}@{release.release}"
            if key in data and data[key].get("url") == release.url:
                return  # the first use wins; a later different digest is a mismatch, not an update
            data[key] = {"url": release.url, "sha256": sha256, "size": size, "recorded_at": time.time()}
            atomic_write_json(self.path, data)


# ----------------------------------------------------------------- the cache as a whole
@dataclass(frozen=True)
class CachedEntry:
    model_id: str
    release: str
    path: Path
    manifest: Manifest | None

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


class Cache:
    """Operations on one cache directory (listing, removing, pruning, writability)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def entry_dir(self, entry: Entry, release: Release) -> Path:
        return layout.entry_dir(self.root, entry, release)

    def lookup(self, entry: Entry, release: Release) -> tuple[Path, Manifest] | None:
        """A complete entry whose files pass the cheap size check, or None."""
        path = self.entry_dir(entry, release)
        manifest = read_manifest(path)
        if manifest is None or manifest.url != release.url:
            return None
        return (path, manifest) if not cheap_problems(path, manifest) else None

    def ensure_writable(self) -> None:
        """Fail up front, with the path in the message, when the cache cannot take a new entry."""
        try:
            for sub in (layout.PARTIAL_DIR, layout.STAGING_DIR, layout.LOCK_DIR):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root / layout.STAGING_DIR, prefix=".probe-")
            probe.close()
        except OSError as exc:
            raise CacheError(f"cache directory {self.root} is not writable ({exc.strerror or exc})",
                             "choose another with --cache-dir or $MOBILENET_ZOO_CACHE, or fix its permissions"
                             ) from None

    def check_free_space(self, needed: int, what: str) -> None:
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return
        if free < needed:
            raise CacheError(f"not enough free disk space for {what}: need about {needed / 1e6:.0f} MB, "
                             f"{free / 1e6:.0f} MB free in {self.root}",
                             "free some space, run `mobilenet-zoo cache prune`, or use another --cache-dir")

    def entries(self) -> Iterator[CachedEntry]:
        if not self.root.is_dir():
            return
        for model_dir in sorted(self.root.iterdir()):
            if model_dir.name.startswith(".") or not model_dir.is_dir():
                continue
            for release_dir in sorted(model_dir.iterdir()):
                if release_dir.is_dir() and not release_dir.name.startswith("."):
                    yield CachedEntry(model_dir.name, release_dir.name, release_dir, read_manifest(release_dir))

    def remove(self, entry: Entry, release: Release | None = None) -> list[Path]:
        """Remove an entry (or all releases of a model) by renaming it away first (atomic for readers)."""
        removed = []
        for rel in ([release] if release else list(entry.releases)):
            path = self.entry_dir(entry, rel)
            if path.exists():
                self.discard(path)
                removed.append(path)
        model_dir = self.root / entry.id
        if model_dir.is_dir() and not any(model_dir.iterdir()):
            model_dir.rmdir()
        return removed

    def discard(self, path: Path) -> None:
        """Take a directory out of view atomically, then delete it."""
        trash_root = self.root / layout.STAGING_DIR
        trash_root.mkdir(parents=True, exist_ok=True)
        trash = trash_root / f"trash.pid{os.getpid()}.{secrets.token_hex(4)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        remove_tree(trash)

    def staging_dir(self, entry: Entry, release: Release) -> Path:
        path = self.root / layout.STAGING_DIR / private_name(entry, release)
        path.mkdir(parents=True)
        return path

    def clear_dead_staging(self, entry: Entry, release: Release) -> None:
        """Remove staging dirs of this model left by processes that died mid-unpack."""
        folder = self.root / layout.STAGING_DIR
        prefix = f"{entry.id}@{release.release}."
        if folder.is_dir():
            for item in folder.iterdir():
                if item.name.startswith(prefix) and not pid_alive(owner_pid(item.name) or 0):
                    remove_tree(item)

    def partials(self, entry: Entry | None = None, release: Release | None = None) -> list[Path]:
        folder = self.root / layout.PARTIAL_DIR
        if not folder.is_dir():
            return []
        prefix = f"{entry.id}@{release.release}." if entry and release else ""
        return sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and p.name.endswith(".part"))

    def adopt_partial(self, entry: Entry, release: Release) -> Path:
        """A private partial path for this process, taking over the largest leftover of a dead one.

        The takeover is a rename: if two processes race for the same leftover, exactly one wins.
        """
        folder = self.root / layout.PARTIAL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        mine = folder / (private_name(entry, release) + ".part")
        leftovers = [p for p in self.partials(entry, release) if not pid_alive(owner_pid(p.name) or 0)]
        leftovers.sort(key=lambda p: p.stat().st_size if p.exists() else -1, reverse=True)
        for candidate in leftovers:
            try:
                os.rename(candidate, mine)
            except FileNotFoundError:
                continue
            side = Path(str(candidate) + ".json")
            try:
                os.rename(side, Path(str(mine) + ".json"))
            except FileNotFoundError:
                pass
            for other in leftovers:  # older leftovers of dead writers are useless now
                if other != candidate:
                    other.unlink(missing_ok=True)
                    Path(str(other) + ".json").unlink(missing_ok=True)
            break
        return mine

    def prune(self, catalog=None, *, old_releases: bool = True) -> list[str]:
        """Remove what no live process uses: dead partials, dead staging dirs, stale locks,
        and (with a catalog) entries whose release or URL the catalog no longer lists."""
        removed: list[str] = []
        for sub in (layout.PARTIAL_DIR, layout.STAGING_DIR):
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for item in folder.iterdir():
                pid = owner_pid(item.name)
                if pid is None or not pid_alive(pid):
                    remove_tree(item)
                    removed.append(str(item))
        locks = self.root / layout.LOCK_DIR
        if locks.is_dir():
            from filelock import FileLock, Timeout

            for lock_file in locks.glob("*.lock"):
                lock = FileLock(str(lock_file), timeout=0)
                try:
                    with lock:
                        pass
                except Timeout:
                    continue  # held by a live process
                lock_file.unlink(missing_ok=True)
                removed.append(str(lock_file))
        if catalog is not None and old_releases:
            for cached in list(self.entries()):
                if cached.model_id not in catalog:
                    continue
                entry = catalog.get(cached.model_id)
                known = {r.release: r.url for r in entry.releases}
                stale = cached.release not in known or (
                    cached.manifest is not None and cached.manifest.url != known[cached.release])
                if cached.manifest is None or stale:
                    self.discard(cached.path)
                    removed.append(str(cached.path))
        return removed
