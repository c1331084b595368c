"""The model cache on disk: entries, manifests, trusted digests, partials and clean-up.

Layout: see ``zoo.fetching.layout``. The rules that keep it safe:

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

import errno
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import layout
from .._util.atomic import DamagedStateFile, atomic_write_json, read_state
from ..catalog.registry import Entry, Release
from ..errors import CacheError
from .locking import CacheLock, LockTimeout, host_name
from .manifest import HEX64, Manifest, ManifestError, cheap_problems, is_count, load_manifest, short
from .partial import PARTIAL_SUFFIX, SIDECAR_SUFFIX, move_partial, sidecar_path
from .._util.safepath import check_inside, inside, is_plain_file, is_safe_name, remove_tree



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
    """A name no other process will pick: model, release, host, our pid and a random tag.

    The host matters on a cache shared over a network file system: a pid means nothing on
    another machine, so only the writer's own host may ever decide that the writer is dead.
    """
    return f"{entry.id}@{release.release}.{host_name()}.pid{os.getpid()}.{secrets.token_hex(4)}"


# <key>.<host>.pid<N>.<8 hex>[.part[.json]]; names from before the host was added have no host
_PRIVATE = re.compile(r"\.(?:(?P<host>[A-Za-z0-9-]+)\.)?pid(?P<pid>\d+)\.(?P<tag>[0-9a-f]{4,16})"
                      rf"(?P<suffix>{re.escape(PARTIAL_SUFFIX)}(?:{re.escape(SIDECAR_SUFFIX)})?)?$")


@dataclass(frozen=True)
class Owner:
    key: str            # "<id>@<release>" or "trash"
    host: str | None
    pid: int

    @property
    def local(self) -> bool:
        return self.host is None or self.host == host_name()

    @property
    def dead(self) -> bool:
        """Provably dead: a process of *this* host that no longer runs. Other hosts: never."""
        return self.local and not pid_alive(self.pid)


def owner_of(name: str) -> Owner | None:
    """Who wrote a private name (None: the name is not one of ours, so it is never touched)."""
    match = _PRIVATE.search(name)
    if not match:
        return None
    key = name[:match.start()]
    model, at, release = key.partition("@")
    if key != "trash" and not (at and is_safe_name(model) and is_safe_name(release)):
        return None
    return Owner(key, match.group("host"), int(match.group("pid")))


def cache_write_error(exc: OSError, action: str, path: Path) -> CacheError:
    """An OSError while changing the cache, as a message that says what to do."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EROFS:
        hint = "the cache is on a read-only file system; use it read-only (fetch, restore) or remount it"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"you lack permission in {path.parent}; ask its owner, or use your own cache_dir"
    elif exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        hint = "free some disk space, or use another cache_dir"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        hint = f"something that is not a cache folder is in the way ({exc.filename or path}); move it away"
    else:
        hint = "check the cache directory's file system and permissions"
    return CacheError(f"cannot {action} {path}: {reason}", hint, params=("cache_dir",))


# ----------------------------------------------------------------- trust on first use
class TrustStoreError(CacheError):
    """trusted.json is damaged: refusing to guess (an empty store would accept any new bytes)."""


class TrustStore:
    """Digests recorded the first time an unpinned model was fetched (``trusted.json``).

    The file is the only thing that stops a changed upstream tarball from being accepted, so
    a damaged one is an error naming the file and the way out, never an empty store.
    """

    def __init__(self, cache: Path):
        self.path = Path(cache) / layout.TRUST_FILE

    def _load(self) -> dict[str, dict]:
        try:
            data = read_state(self.path)
        except DamagedStateFile as exc:
            raise self._damaged(exc.reason) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self._damaged(f"expected a mapping of model@release to records, found {type(data).__name__}")
        for key, record in data.items():
            if not isinstance(record, dict):
                raise self._damaged(f"the record for {key!r} is a {type(record).__name__}, not a mapping")
            if not isinstance(record.get("url"), str) or not (
                    isinstance(record.get("sha256"), str) and HEX64.fullmatch(record["sha256"])):
                raise self._damaged(f"the record for {key!r} lacks a url or a valid sha256")
            if record.get("size") is not None and not is_count(record.get("size")):
                raise self._damaged(f"the record for {key!r} has an invalid size {short(record.get('size'))}")
        return data

    def _damaged(self, reason: str) -> TrustStoreError:
        return TrustStoreError(
            f"the trust-on-first-use store {self.path} is damaged: {reason}",
            f"it holds the digests first seen for models upstream never pinned. Restore it from a backup, "
            f"or move it away (`mv {self.path} {self.path}.bad`) to trust the next download of each such "
            "model anew; nothing was changed")

    def get(self, entry: Entry, release: Release) -> str | None:
        record = self._load().get(f"{entry.id}@{release.release}")
        if record is not None and record.get("url") == release.url:
            return record["sha256"]
        return None

    def record(self, entry: Entry, release: Release, sha256: str, size: int) -> None:
        with CacheLock(self.path.with_name(self.path.name + ".lock"), timeout=60, what="recording a digest"):
            data = self._load()
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
    problem: str | None = None   # why the manifest is missing or damaged

    @property
    def size_bytes(self) -> int:
        total = 0
        for folder, dirs, files in os.walk(self.path):  # never follows links
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
        return total


@dataclass(frozen=True)
class Lookup:
    """What the cache holds for one release: a usable entry (``problem`` None) or why not."""

    path: Path
    manifest: Manifest | None
    problem: str | None
    exists: bool


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)     # paths removed (or that would be, dry run)
    kept: list[str] = field(default_factory=list)        # notes on what was left alone and why


class Cache:
    """Operations on one cache directory (listing, removing, pruning, writability).

    Every path goes through ``zoo._util.safepath.inside`` (never a joined string) and every removal
    through :meth:`discard`, which refuses anything not provably inside the cache.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def entry_dir(self, entry: Entry, release: Release) -> Path:
        return layout.entry_dir(self.root, entry, release)

    def examine(self, entry: Entry, release: Release) -> Lookup:
        """Whether ``entry@release`` is cached and intact (size check only), and if not, why."""
        path = self.entry_dir(entry, release)
        if not os.path.lexists(path):
            return Lookup(path, None, "not cached", False)
        try:
            manifest = load_manifest(path)
        except ManifestError as exc:
            return Lookup(path, None, f"{layout.MANIFEST} is damaged: {exc.reason}", True)
        if manifest is None:
            return Lookup(path, None, f"{layout.MANIFEST} is missing (an unfinished or foreign folder)", True)
        if (manifest.model_id, manifest.release) != (entry.id, release.release):
            return Lookup(path, manifest, f"{layout.MANIFEST} describes {manifest.model_id}@{manifest.release}", True)
        if manifest.url != release.url:
            return Lookup(path, manifest, f"it was fetched from {manifest.url}, the catalog now says {release.url}",
                          True)
        problems = cheap_problems(path, manifest)
        return Lookup(path, manifest, "; ".join(problems) if problems else None, True)

    def lookup(self, entry: Entry, release: Release) -> tuple[Path, Manifest] | None:
        """A complete entry whose files pass the cheap size check, or None."""
        found = self.examine(entry, release)
        return (found.path, found.manifest) if found.problem is None else None

    def ensure_writable(self) -> None:
        """Fail up front, with the path in the message, when the cache cannot take a new entry."""
        try:
            for sub in (layout.PARTIAL_DIR, layout.STAGING_DIR, layout.LOCK_DIR):
                folder = inside(self.root, sub, what="cache folder")
                folder.mkdir(parents=True, exist_ok=True)
                inside(self.root, sub, what="cache folder")  # still not a link after mkdir
            probe = tempfile.NamedTemporaryFile(dir=self.root / layout.STAGING_DIR, prefix=".probe-")
            probe.close()
        except OSError as exc:
            if isinstance(exc, CacheError):
                raise
            raise CacheError(f"cache directory {self.root} is not writable ({exc.strerror or exc})",
                             "choose another with cache_dir or $MOBILENET_ZOO_CACHE, or fix its permissions",
                             params=("cache_dir",)) from None

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
        """Every ``<id>/<release>`` folder (links and foreign names are skipped, never followed)."""
        if not self.root.is_dir():
            return
        for model_dir in sorted(os.scandir(self.root), key=lambda d: d.name):
            if not is_safe_name(model_dir.name) or not model_dir.is_dir(follow_symlinks=False):
                continue
            try:
                releases = sorted(os.scandir(model_dir.path), key=lambda d: d.name)
            except OSError:
                continue
            for release_dir in releases:
                if not is_safe_name(release_dir.name) or not release_dir.is_dir(follow_symlinks=False):
                    continue
                path = Path(release_dir.path)
                try:
                    manifest, problem = load_manifest(path), None
                    if manifest is None:
                        problem = f"{layout.MANIFEST} is missing"
                except ManifestError as exc:
                    manifest, problem = None, f"{layout.MANIFEST} is damaged: {exc.reason}"
                yield CachedEntry(model_dir.name, release_dir.name, path, manifest, problem)

    def remove(self, entry: Entry, release: Release | None = None, *, dry_run: bool = False) -> list[Path]:
        """Remove an entry (or all releases of a model) by renaming it away first (atomic for readers)."""
        removed = []
        for rel in ([release] if release else list(entry.releases)):
            path = self.entry_dir(entry, rel)
            if os.path.lexists(path):
                if not dry_run:
                    self.discard(path)
                removed.append(path)
        if not dry_run:
            model_dir = inside(self.root, entry.id, what=f"cache folder of {entry.id}")
            try:
                if model_dir.is_dir() and not any(model_dir.iterdir()):
                    model_dir.rmdir()
            except OSError:
                pass
        return removed

    def discard(self, path: Path) -> None:
        """Take a directory out of view atomically, then delete it (never through a link)."""
        path = check_inside(self.root, Path(path), what="cache path")
        trash_root = inside(self.root, layout.STAGING_DIR, what="cache folder")
        try:
            trash_root.mkdir(parents=True, exist_ok=True)
            trash = trash_root / f"trash.{host_name()}.pid{os.getpid()}.{secrets.token_hex(4)}"
            try:
                os.rename(path, trash)
            except FileNotFoundError:
                return
            remove_tree(trash)
        except OSError as exc:
            if isinstance(exc, CacheError):
                raise
            raise cache_write_error(exc, "remove", path) from None

    def staging_dir(self, entry: Entry, release: Release) -> Path:
        path = inside(self.root, layout.STAGING_DIR, private_name(entry, release), what="staging folder")
        path.mkdir(parents=True)
        return path

    def _private(self, sub: str) -> list[tuple[os.DirEntry, Owner | None]]:
        folder = inside(self.root, sub, what="cache folder")
        if not folder.is_dir():
            return []
        with os.scandir(folder) as it:
            return [(item, owner_of(item.name)) for item in it]

    def clear_dead_staging(self, entry: Entry, release: Release) -> None:
        """Remove staging dirs of this model left by processes that died mid-unpack (on this host)."""
        for item, owner in self._private(layout.STAGING_DIR):
            if owner is not None and owner.key == f"{entry.id}@{release.release}" and owner.dead:
                remove_tree(Path(item.path))

    def partials(self, entry: Entry | None = None, release: Release | None = None) -> list[Path]:
        key = f"{entry.id}@{release.release}" if entry and release else None
        return sorted(Path(item.path) for item, owner in self._private(layout.PARTIAL_DIR)
                      if owner is not None and item.name.endswith(PARTIAL_SUFFIX) and (key is None or owner.key == key))

    def adopt_partial(self, entry: Entry, release: Release) -> Path:
        """A private partial path for this process, taking over the largest leftover of a dead one.

        Only regular files with one link that we own are adopted (a planted symlink or hard link
        would make us write outside the cache); anything else is left alone. The takeover is a
        rename: if two processes race for the same leftover, exactly one wins.
        """
        folder = inside(self.root, layout.PARTIAL_DIR, what="cache folder")
        folder.mkdir(parents=True, exist_ok=True)
        mine = folder / (private_name(entry, release) + PARTIAL_SUFFIX)
        leftovers = [p for p in self.partials(entry, release)
                     if owner_of(p.name).dead and is_plain_file(p)]
        leftovers.sort(key=lambda p: p.lstat().st_size if os.path.lexists(p) else -1, reverse=True)
        for candidate in leftovers:
            if not is_plain_file(sidecar_path(candidate)):
                remove_tree(sidecar_path(candidate))  # a planted link or folder is never carried along
            try:
                move_partial(candidate, mine)
            except FileNotFoundError:
                continue
            if not is_plain_file(mine):  # swapped for something else between the check and the rename
                remove_tree(mine)
                continue
            for other in leftovers:  # older leftovers of dead writers are useless now
                if other != candidate:
                    remove_tree(other)
                    remove_tree(sidecar_path(other))
            break
        return mine

    def prune(self, catalog=None, *, unlisted: bool = False, dry_run: bool = False) -> PruneReport:
        """Remove what is provably ours and dead, and nothing else:

        * partials and staging dirs whose name is one of ours and whose writer is a dead process
          of *this* host (another host's pid means nothing here);
        * lock files nobody holds;
        * with ``unlisted`` (and a catalog): complete entries (a valid manifest naming the same
          model and release) whose release the catalog does not list, or lists with another URL.

        Folders without a valid manifest, names we never create, links, and entries of models the
        catalog does not know by their exact id are left alone and reported.
        """
        report = PruneReport()

        def drop(path: Path, why: str) -> None:
            if not dry_run:
                try:
                    if path.parent.name in (layout.PARTIAL_DIR, layout.STAGING_DIR, layout.LOCK_DIR):
                        check_inside(self.root, path.parent, what="cache folder")
                        remove_tree(path)
                    else:
                        self.discard(path)
                except OSError as exc:
                    if isinstance(exc, CacheError):
                        raise
                    raise cache_write_error(exc, "remove", path) from None
            report.removed.append(f"{path}  ({why})")

        for sub in (layout.PARTIAL_DIR, layout.STAGING_DIR):
            for item, owner in self._private(sub):
                path = Path(item.path)
                if owner is None:
                    report.kept.append(f"{path}: not a name this program creates; left alone")
                elif not owner.local:
                    report.kept.append(f"{path}: written on host {owner.host}; only that host can tell "
                                       "whether its writer is alive")
                elif owner.dead:
                    drop(path, f"left by dead process {owner.pid}")
        locks = inside(self.root, layout.LOCK_DIR, what="cache folder")
        if locks.is_dir():
            for lock_file in sorted(locks.iterdir()):
                if not lock_file.name.endswith(".lock") or lock_file.is_symlink():
                    if lock_file.is_symlink():
                        drop(lock_file, "a symbolic link where a lock file belongs")
                    continue
                if dry_run:
                    report.removed.append(f"{lock_file}  (lock file, if nobody holds it)")
                    continue
                try:
                    with CacheLock(lock_file, timeout=0):
                        pass  # released = removed
                except LockTimeout:
                    continue  # held by a live process
                except CacheError as exc:
                    report.kept.append(f"{lock_file}: {exc.message}; left alone")
                    continue
                except OSError as exc:
                    if isinstance(exc, CacheError):
                        raise
                    raise cache_write_error(exc, "remove", lock_file) from None
                report.removed.append(f"{lock_file}  (stale lock)")
        if catalog is None:
            return report
        by_id = {e.id: e for e in catalog}
        for cached in list(self.entries()):
            entry = by_id.get(cached.model_id)
            manifest = cached.manifest
            if manifest is None:
                report.kept.append(f"{cached.path}: {cached.problem}; not provably ours "
                                   "(`verify --repair` rebuilds damaged entries)")
                continue
            if (manifest.model_id, manifest.release) != (cached.model_id, cached.release):
                report.kept.append(f"{cached.path}: its manifest names another model; left alone")
                continue
            known = {r.release: r.url for r in entry.releases} if entry else {}
            if cached.release in known and known[cached.release] == manifest.url:
                continue
            why = ("the catalog does not list this model" if entry is None else
                   "the catalog does not list this release" if cached.release not in known else
                   "the catalog now gives another URL for this release")
            if unlisted:
                drop(cached.path, why)
            else:
                report.kept.append(f"{cached.path}: {why}; kept (a verified entry; remove it with "
                                   "`cache prune --unlisted` or `cache rm`)")
        return report
