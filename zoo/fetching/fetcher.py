"""`fetch`: get a byte-exact, verified, unpacked model into the cache, or fail cleanly.

One model goes through these steps (``fetch_entry``):

1. cache hit: a complete entry whose files pass a size check -> done, no writes, no lock
   (so a read-only but populated cache still serves);
2. decide the digest to trust: the catalog's pin, else the one recorded on first use
   (``trusted.json``), else none yet (trust on first use, with a warning);
3. take the model's file lock (only to avoid duplicate downloads), check again, check
   that the cache is writable and has room;
4. try each source in turn (mirrors, then upstream; offline: file mirrors only): download
   into a private partial (adopting a dead process's leftover to resume it), hashing on the
   fly, while a second thread unpacks the same bytes into a private staging directory;
5. only when the sha256 matches and the unpack was clean: write the manifest, move the
   archive next to it, and rename the staging directory into place in one step.

Nothing a reader can see ever holds unverified bytes, and a process killed at any point
leaves only private leftovers that later runs reclaim (see ``zoo.fetching.cache``).
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .. import config, notices
from . import layout
from .cache import Cache, TrustStore, fsync_dir
from ..catalog.registry import Catalog, Entry, Release, catalog_or_default
from ..errors import CacheError, IntegrityError, OfflineError, UnexpectedError, UnsafeArchiveError, ZooError
from .manifest import Manifest, write_manifest
from .mirrors import Source, redact, sources_for, try_sources
from .roles import check_roles
from .._util.progress import Task
from .._util.safepath import remove_tree

LOCK_TIMEOUT = 3600.0  # a waiting process gives up after an hour (a slow peer is still downloading)


@dataclass
class FetchOptions:
    cache_dir: Path
    mirrors: Sequence[str] = ()
    offline: bool = False
    require_pinned: bool = False
    keep_archive: bool = True
    stream_unpack: bool = True
    policy: object | None = None  # zoo.fetching.download.DownloadPolicy
    mirror_token: str | None = None  # $MOBILENET_ZOO_MIRROR_TOKEN: sent to http(s) mirrors only
    progress: Callable[[Task, int, int | None], None] | None = None  # zoo._util.progress's contract
    # API default: ``warnings.warn`` (categories in ``zoo.notices``); the CLI installs a stderr printer
    warn: Callable[[str], None] = field(default=notices.warn)


@dataclass(frozen=True)
class FetchResult:
    id: str
    release: str
    path: Path
    sha256: str
    bytes_downloaded: int
    cached: bool
    source: str | None = None
    trusted_on_first_use: bool = False

    @property
    def outcome(self) -> str:
        return "cached" if self.cached else "fetched"

    def to_json(self) -> dict:
        return {"id": self.id, "release": self.release, "status": self.outcome, "path": str(self.path),
                "sha256": self.sha256, "bytes_downloaded": self.bytes_downloaded, "cached": self.cached,
                "source": self.source, "error": None, "hint": None}


def failure_json(entry: Entry, release: Release, error: ZooError) -> dict:
    """A failed model's JSON record: the same keys as ``FetchResult.to_json``."""
    return {"id": entry.id, "release": release.release, "status": "failed", "path": None, "sha256": None,
            "bytes_downloaded": 0, "cached": False, "source": getattr(error, "source", None),
            "error": error.message, "hint": error.hint}


def options_from_env(**overrides) -> FetchOptions:
    """Options for API callers: environment variables first, keyword arguments win."""
    opts = FetchOptions(cache_dir=config.cache_dir(), mirrors=config.mirrors(), offline=config.offline(),
                        mirror_token=config.mirror_token())
    from .._util import progress

    opts.progress = progress.default_progress()  # e.g. the CLI's bar, for downloads inside restore/classify
    shown = progress.default_warn()
    if shown is not None:  # warnings name URLs: mask their credentials wherever they are shown
        opts.warn = lambda msg: shown(redact(msg))
    for key, value in overrides.items():
        if value is not None:
            setattr(opts, key, Path(value) if key == "cache_dir" else value)
    return opts


def fetch(name: str, *, catalog: Catalog | None = None, cache_dir: str | Path | None = None,
          mirrors: Sequence[str] | None = None, offline: bool | None = None,
          require_pinned: bool | None = None,
          progress: bool | type | Callable[[Task, int, int | None], None] | None = None) -> Path:
    """Fetch one model (``name`` may be any alias, ``name@release`` picks a release).

    Returns the entry directory; the unpacked tarball is in its ``model/`` folder.
    ``progress``: the contract every long call shares (``zoo._util.progress``): True (a
    ``tqdm.auto`` bar), a tqdm class, a callback ``progress(task, done_bytes, total_bytes)``
    (``task.id`` is the model), False; None: what the running program installed, else nothing.
    Warnings (such as ``zoo.TrustOnFirstUseWarning``) are ``warnings.warn`` calls.
    """
    from .._util import progress as progress_sinks

    catalog = catalog_or_default(catalog)
    entry, release = catalog.resolve(name)
    opts = options_from_env(cache_dir=cache_dir, mirrors=mirrors, offline=offline,
                            require_pinned=require_pinned)
    opts.progress, close_bar = progress_sinks.resolve(progress)
    try:
        return fetch_entry(entry, release, opts).path
    finally:
        close_bar()


def expected_digest(entry: Entry, release: Release, cache: Path) -> tuple[str | None, bool]:
    """(sha256 to insist on, whether it only comes from our own first use)."""
    if release.sha256:
        return release.sha256, False
    recorded = TrustStore(cache).get(entry, release)
    return recorded, recorded is not None


def fetch_entry(entry: Entry, release: Release, opts: FetchOptions, *, force: bool = False,
                sources: list[Source] | None = None) -> FetchResult:
    """Fetch one release into the cache (see the module docstring). ``force`` (verify --repair,
    after a deep check failed) ignores the cached copy and the archive it kept; ``sources``
    replaces mirrors + upstream (``fetch --from``)."""
    cache = Cache(opts.cache_dir)
    expected, from_tofu = expected_digest(entry, release, cache.root)
    if opts.require_pinned and not release.sha256:
        raise IntegrityError(f"{entry.id}@{release.release} has no published sha256 and require_pinned is set",
                             "fetch it without require_pinned to trust it on first use, or pin a digest "
                             "in your own catalog (catalog)", params=("require_pinned", "catalog"))
    hit, why = _cache_hit(cache, entry, release, expected)
    if force:
        hit, why = None, "forced"
    if hit is not None:
        return hit

    if sources is None:
        sources = sources_for(release.url, opts.mirrors, offline=opts.offline, token=opts.mirror_token)

    def offline_error() -> OfflineError:
        state = ("is not in the cache" if why in ("not cached", "forced")
                 else f"has an unusable cached copy ({why})")
        return OfflineError(f"{entry.id}@{release.release} {state} ({cache.root}) and offline allows no network",
                            f"run `mobilenet-zoo fetch {entry.spec(release)}` while online, or add a file mirror "
                            "(mirrors, a folder) made with `mobilenet-zoo mirror`", params=("offline", "mirrors"))

    if not sources and (force or why == "not cached"):
        raise offline_error()  # (a damaged entry may still be rebuilt offline from its kept archive)
    cache.ensure_writable()

    from .locking import CacheLock

    with CacheLock(layout.lock_path(cache.root, entry, release), timeout=LOCK_TIMEOUT,
                   what=f"fetching {entry.id}@{release.release}", on_wait=opts.warn):
        if not force:
            hit, why = _cache_hit(cache, entry, release, expected)  # a peer may have finished meanwhile
            if hit is not None:
                return hit
        cache.clear_dead_staging(entry, release)
        if why not in ("not cached", "forced"):
            opts.warn(f"{entry.id}@{release.release}: cached copy not used ({why}); replacing it")
        if not force and rebuild_from_kept_archive(cache, entry, release, expected, opts):
            hit, why = _cache_hit(cache, entry, release, expected)
            if hit is not None:
                return hit
        if not sources:
            raise offline_error()
        if release.size_bytes:
            cache.check_free_space(int(release.size_bytes * 2.2), f"{entry.id} (archive + unpacked files)")
        return _fetch_locked(cache, entry, release, expected, from_tofu, sources, opts, force)


def _cache_hit(cache: Cache, entry: Entry, release: Release,
               expected: str | None) -> tuple[FetchResult | None, str]:
    """(a hit, "") or (None, why the cache cannot serve it). Writes nothing, hashes nothing."""
    found = cache.examine(entry, release)
    if found.problem is not None:
        return None, found.problem
    manifest = found.manifest
    if expected and manifest.archive_sha256 != expected:
        # built from other bytes than the ones we now insist on (a corrected pin, a re-publication)
        return None, (f"it was made from sha256 {manifest.archive_sha256[:16]}..., the catalog now pins "
                      f"{expected[:16]}...")
    return FetchResult(entry.id, release.release, found.path, manifest.archive_sha256, 0, True,
                       trusted_on_first_use=manifest.trusted_on_first_use), ""


def rebuild_from_kept_archive(cache: Cache, entry: Entry, release: Release, expected: str | None,
                              opts: FetchOptions) -> bool:
    """Rebuild a damaged entry from the ``archive.tgz`` it kept, when that archive still hashes
    to the digest we insist on (no network: works offline). False when there is nothing to use.

    The new entry replaces the old one only after it unpacked cleanly; the old one (and its
    archive) stays untouched until then.
    """
    from .hashing import sha256_file
    from .._util.safepath import is_plain_file
    from .unpack import unpack_archive

    if not expected:
        return False  # without a pin or a recorded digest nothing proves the kept archive
    path = cache.entry_dir(entry, release)
    archive = path / layout.ARCHIVE
    if not os.path.isdir(path) or os.path.islink(path) or not is_plain_file(archive, own=False):
        return False
    try:
        if (release.size_bytes and archive.stat().st_size != release.size_bytes) \
                or sha256_file(archive) != expected:
            return False
    except OSError:
        return False
    try:
        staging = cache.staging_dir(entry, release)
    except OSError as exc:
        if isinstance(exc, CacheError):
            raise
        from .cache import cache_write_error

        raise cache_write_error(exc, "rebuild the entry in", cache.root / layout.STAGING_DIR) from None
    try:
        files = unpack_archive(archive, staging / layout.MODEL_DIR, label=entry.id)
        manifest = Manifest.of_unpacked(entry.id, release.release, release.url, expected,
                                        archive.stat().st_size, files, trusted_on_first_use=not release.sha256,
                                        archive_kept=True, roles=check_roles(entry, staging / layout.MODEL_DIR))
        write_manifest(staging, manifest)
        os.link(archive, staging / layout.ARCHIVE)
        fsync_dir(staging)
        cache.discard(path)
        os.rename(staging, path)
        fsync_dir(path.parent)
    except OSError as exc:
        remove_tree(staging)
        if isinstance(exc, CacheError):
            raise
        if _is_disk_full(exc):
            raise _disk_full(cache, entry, release, exc, expected and archive.stat().st_size, archive) from None
        return False
    except (UnsafeArchiveError, IntegrityError):
        remove_tree(staging)
        return False
    except BaseException:
        remove_tree(staging)
        raise
    opts.warn(f"{entry.id}@{release.release}: rebuilt from the verified archive kept in the cache")
    return True


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))


def _disk_full(cache: Cache, entry: Entry, release: Release, exc: OSError, size: int | None = None,
               archive: Path | None = None) -> CacheError:
    """Disk full while writing: a space problem, not a damaged or hostile archive.

    When the whole archive is on disk its headers say exactly how much room unpacking needs.
    """
    import shutil

    from .unpack import declared_size

    size = size or release.size_bytes
    unpacked = declared_size(archive) if archive is not None and size else None
    try:
        free = shutil.disk_usage(cache.root).free
    except OSError:
        free = None
    if unpacked is not None:
        need = f"about {(unpacked + size) / 1e6:.1f} MB free ({unpacked / 1e6:.1f} MB unpacked + the " \
               f"{size / 1e6:.1f} MB archive)"
    elif size:
        need = f"about {size * 2.2 / 1e6:.0f} MB free (archive + unpacked files, estimated)"
    else:
        need = "more free space"
    have = f"; {free / 1e6:.1f} MB free now" if free is not None else ""
    return CacheError(f"{entry.id}@{release.release}: the disk holding {cache.root} is full "
                      f"({exc.strerror or exc}); it needs {need}{have}",
                      "free some space and run the command again (what was downloaded is kept and "
                      "resumed), or use another cache_dir", params=("cache_dir",))


def _fetch_locked(cache: Cache, entry: Entry, release: Release, expected: str | None, from_tofu: bool,
                  sources: list[Source], opts: FetchOptions, force: bool = False) -> FetchResult:
    return try_sources(sources, lambda source: _fetch_from(cache, entry, release, expected, from_tofu, source,
                                                           opts, force), model=entry.id)


def _fetch_from(cache: Cache, entry: Entry, release: Release, expected: str | None, from_tofu: bool,
                source: Source, opts: FetchOptions, force: bool = False) -> FetchResult:
    from .download import DownloadPolicy, download
    from .partial import remove_partial

    partial = cache.adopt_partial(entry, release)
    staging = cache.staging_dir(entry, release)
    unpacker = _StreamingUnpacker(staging / layout.MODEL_DIR, entry.id) if opts.stream_unpack else None
    task = Task(entry.id)
    progress = (lambda done, total: opts.progress(task, done, total)) if opts.progress else None
    result = None
    try:
        try:
            result = download(source.url, partial, expected_size=release.size_bytes, expected_sha256=expected,
                              policy=opts.policy or DownloadPolicy(), progress=progress, sink=unpacker,
                              label=entry.id, token=source.token)
        except BaseException:
            if unpacker:
                unpacker.abandon()
            raise
        files = unpacker.finish() if unpacker else None
        if files is None:  # streaming was off or could not follow the download: unpack from the file
            from .unpack import unpack_archive

            remove_tree(staging / layout.MODEL_DIR)
            files = unpack_archive(partial, staging / layout.MODEL_DIR, label=entry.id)
    except BaseException as exc:
        remove_tree(staging)
        cause = exc if isinstance(exc, OSError) and not isinstance(exc, ZooError) else exc.__cause__
        if _is_disk_full(cause):  # our disk, not the archive: keep the download for the next run
            raise _disk_full(cache, entry, release, cause, result and result.size,
                             partial if result is not None else None) from None
        if isinstance(exc, (UnsafeArchiveError, IntegrityError)):
            remove_partial(partial)  # refused or damaged bytes are never resumed from
        else:
            _drop_if_empty(partial)
        raise

    trusted_now = expected is None
    manifest = Manifest.of_unpacked(entry.id, release.release, release.url, result.sha256, result.size, files,
                                    trusted_on_first_use=trusted_now or from_tofu, archive_kept=opts.keep_archive,
                                    roles=check_roles(entry, staging / layout.MODEL_DIR))
    try:
        write_manifest(staging, manifest)
        if opts.keep_archive:
            os.replace(partial, staging / layout.ARCHIVE)
        remove_partial(partial)
        fsync_dir(staging)
        final = cache.entry_dir(entry, release)
        final.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(final) and (force or cache.lookup(entry, release) is None):
            cache.discard(final)  # the damaged or outdated copy this download replaces
        try:
            os.rename(staging, final)
        except OSError:
            # Someone else (racing without the lock) published first; theirs is as good as ours.
            remove_tree(staging)
            if cache.lookup(entry, release) is None:
                raise
        fsync_dir(final.parent)
    except BaseException as exc:
        remove_tree(staging)
        if isinstance(exc, OSError) and not isinstance(exc, ZooError):
            from .cache import cache_write_error

            if _is_disk_full(exc):
                raise _disk_full(cache, entry, release, exc, result.size) from None
            raise cache_write_error(exc, "publish the entry at", cache.entry_dir(entry, release)) from None
        raise
    if trusted_now:
        TrustStore(cache.root).record(entry, release, result.sha256, result.size)
        opts.warn(notices.Notice(f"{entry.id}@{release.release}: upstream publishes no sha256; trusting this "
                                 f"first download (sha256 {result.sha256}) and insisting on it from now on",
                                 notices.TrustOnFirstUseWarning))
    return FetchResult(entry.id, release.release, final, result.sha256, result.bytes_transferred, False,
                       source.label, trusted_now or from_tofu)


def _drop_if_empty(partial: Path) -> None:
    """A partial that received nothing is no resume point: leave nothing behind."""
    from .partial import remove_partial

    try:
        if os.lstat(partial).st_size == 0:
            remove_partial(partial)
    except OSError:
        pass


class _Pipe:
    """A bounded byte queue between the downloading thread and the unpacking thread.

    ``read`` copies only the bytes it returns (tarfile reads in small blocks; re-slicing a
    growing buffer would cost quadratic time on a 200 MB archive).
    """

    def __init__(self, max_chunks: int = 64):
        self._q: queue.Queue = queue.Queue(max_chunks)
        self._cur = b""
        self._pos = 0
        self._eof = False
        self.closed_by_reader = False

    def put(self, data: bytes | None) -> None:
        while not self.closed_by_reader:
            try:
                self._q.put(data, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        parts = []
        need = n
        while need != 0:
            if self._pos >= len(self._cur):
                if self._eof:
                    break
                item = self._q.get()
                if item is None:
                    self._eof = True
                    break
                self._cur, self._pos = item, 0
                continue
            available = len(self._cur) - self._pos
            take = available if need < 0 else min(need, available)
            parts.append(self._cur[self._pos:self._pos + take])
            self._pos += take
            if need > 0:
                need -= take
        return b"".join(parts)


class _StreamingUnpacker:
    """Unpacks the tarball while it downloads (a ``zoo.fetching.partial.Sink``).

    Every restart of the download starts a fresh unpack; ``finish`` returns the manifest
    files, or None when streaming could not follow (the caller then unpacks the file).
    """

    def __init__(self, dest: Path, label: str):
        self.dest, self.label = dest, label
        self._thread: threading.Thread | None = None
        self._pipe: _Pipe | None = None
        self._result = None
        self._error: BaseException | None = None

    def restart(self) -> None:
        self.abandon()
        self._pipe, self._result, self._error = _Pipe(), None, None
        self._thread = threading.Thread(target=self._run, args=(self._pipe,), daemon=True,
                                        name=f"unpack-{self.label}")
        self._thread.start()

    def _run(self, pipe: _Pipe) -> None:
        from .unpack import unpack_stream

        try:
            self._result = unpack_stream(pipe, self.dest, label=self.label)
        except BaseException as exc:  # reported by finish()
            self._error = exc
        finally:
            pipe.closed_by_reader = True  # stop blocking the writer (trailing padding, or failure)

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._failure()  # the unpacker refused these bytes: stop the download at once
        if self._pipe is not None:
            self._pipe.put(bytes(chunk))

    def _failure(self) -> BaseException:
        error = self._error
        if isinstance(error, ZooError):  # refused (UnsafeArchiveError) or damaged (IntegrityError)
            return error
        if isinstance(error, OSError):  # our disk, not the archive (disk full, permissions)
            failure = CacheError(f"cannot write the unpacked files in {self.dest}: {error.strerror or error}",
                                 "free some disk space, or use another cache_dir", params=("cache_dir",))
            failure.__cause__ = error
            return failure
        failure = UnsafeArchiveError(str(error), archive=self.label)
        failure.__cause__ = error
        return failure

    def finish(self):
        if self._thread is None or self._pipe is None:
            return None
        self._pipe.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._failure()
        return self._result

    def abandon(self) -> None:
        if self._thread is not None and self._pipe is not None:
            self._pipe.closed_by_reader = True
            # unblock the reader: it may be waiting for data that will never come
            try:
                self._pipe._q.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout=30)
        self._thread = self._pipe = None
        remove_tree(self.dest)


def resolve_many(catalog: Catalog, names: Sequence[str]) -> list[tuple[Entry, Release]]:
    """Names -> (entry, release), de-duplicated, in the given order; unknown names fail first."""
    out: list[tuple[Entry, Release]] = []
    seen = set()
    for name in names:
        entry, release = catalog.resolve(name)
        if (entry.id, release.release) not in seen:
            seen.add((entry.id, release.release))
            out.append((entry, release))
    return out


def fetch_many(pairs: Sequence[tuple[Entry, Release]], opts: FetchOptions, jobs: int = 1,
               on_done: Callable[[Entry, FetchResult | None, ZooError | None], None] | None = None
               ) -> list[tuple[Entry, FetchResult | None, ZooError | None]]:
    """Fetch several models, ``jobs`` at a time; one failure does not stop the others."""
    from concurrent.futures import ThreadPoolExecutor

    def one(pair):
        entry, release = pair
        try:
            outcome = (entry, fetch_entry(entry, release, opts), None)
        except ZooError as exc:
            outcome = (entry, None, exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a bug of ours must not lose the other models' results
            outcome = (entry, None, UnexpectedError(entry.id, exc))
        if on_done:
            on_done(*outcome)
        return outcome

    if jobs <= 1 or len(pairs) <= 1:
        return [one(p) for p in pairs]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, pairs))
