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
leaves only private leftovers that later runs reclaim (see ``zoo.cache``).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from . import config, layout
from .cache import Cache, Manifest, TrustStore, atomic_write_json, fsync_dir, remove_tree
from .catalog import Catalog, Entry, Release, load_catalog
from .errors import CacheError, DownloadError, IntegrityError, OfflineError, UnsafeArchiveError, ZooError
from .mirrors import Source, sources_for

LOCK_TIMEOUT = 3600.0  # a waiting process gives up after an hour (a slow peer is still downloading)


@dataclass
class FetchOptions:
    cache_dir: Path
    mirrors: Sequence[str] = ()
    offline: bool = False
    require_pinned: bool = False
    keep_archive: bool = True
    stream_unpack: bool = True
    policy: object | None = None  # zoo.download.DownloadPolicy
    progress: Callable[[Entry, int, int | None], None] | None = None
    warn: Callable[[str], None] = field(default=lambda msg: print(f"warning: {msg}", file=sys.stderr))


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

    def to_json(self) -> dict:
        return {"id": self.id, "release": self.release, "path": str(self.path), "sha256": self.sha256,
                "bytes_downloaded": self.bytes_downloaded, "cached": self.cached, "source": self.source}


def options_from_env(**overrides) -> FetchOptions:
    """Options for API callers: environment variables first, keyword arguments win."""
    opts = FetchOptions(cache_dir=config.cache_dir(), mirrors=config.mirrors(), offline=config.offline())
    from . import progress

    opts.progress = progress.default_progress()  # e.g. the CLI's bar, for downloads inside restore/classify
    opts.warn = progress.default_warn() or opts.warn
    for key, value in overrides.items():
        if value is not None:
            setattr(opts, key, Path(value) if key == "cache_dir" else value)
    return opts


def fetch(name: str, *, catalog: Catalog | None = None, cache_dir: str | Path | None = None,
          mirrors: Sequence[str] | None = None, offline: bool | None = None,
          require_pinned: bool | None = None) -> Path:
    """Fetch one model (``name`` may be any alias, ``name@release`` picks a release).

    Returns the entry directory; the unpacked tarball is in its ``model/`` folder.
    """
    catalog = catalog or load_catalog()
    entry, release = catalog.resolve(name)
    opts = options_from_env(cache_dir=cache_dir, mirrors=mirrors, offline=offline,
                            require_pinned=require_pinned)
    return fetch_entry(entry, release, opts).path


def expected_digest(entry: Entry, release: Release, cache: Path) -> tuple[str | None, bool]:
    """(sha256 to insist on, whether it only comes from our own first use)."""
    if release.sha256:
        return release.sha256, False
    recorded = TrustStore(cache).get(entry, release)
    return recorded, recorded is not None


def fetch_entry(entry: Entry, release: Release, opts: FetchOptions,
                sources: list[Source] | None = None) -> FetchResult:
    """Fetch one release into the cache; ``sources`` replaces mirrors + upstream (``fetch --from``)."""
    cache = Cache(opts.cache_dir)
    expected, from_tofu = expected_digest(entry, release, cache.root)
    if opts.require_pinned and not release.sha256:
        raise IntegrityError(f"{entry.id}@{release.release} has no published sha256 and --require-pinned is set",
                             "fetch it without --require-pinned to trust it on first use, or pin a digest "
                             "in your own catalog (--catalog)")
    hit = _cache_hit(cache, entry, release, expected)
    if hit is not None:
        return hit

    if sources is None:
        sources = sources_for(release.url, opts.mirrors, offline=opts.offline)
    if not sources:
        raise OfflineError(f"{entry.id}@{release.release} is not in the cache ({cache.root}) and --offline "
                           "allows no network",
                           f"run `mobilenet-zoo fetch {entry.spec(release)}` while online, or add a file mirror "
                           "(--mirror DIR) made with `mobilenet-zoo mirror`")
    cache.ensure_writable()

    from filelock import FileLock, Timeout

    lock = FileLock(str(layout.lock_path(cache.root, entry, release)), timeout=LOCK_TIMEOUT)
    try:
        with lock:
            hit = _cache_hit(cache, entry, release, expected)  # a peer may have finished meanwhile
            if hit is not None:
                return hit
            cache.clear_dead_staging(entry, release)
            broken = cache.entry_dir(entry, release)
            if broken.exists():
                opts.warn(f"{entry.id}@{release.release}: cached copy is damaged or outdated; fetching it again")
                cache.discard(broken)
            if release.size_bytes:
                cache.check_free_space(int(release.size_bytes * 2.2), f"{entry.id} (archive + unpacked files)")
            return _fetch_locked(cache, entry, release, expected, from_tofu, sources, opts)
    except Timeout:
        raise CacheError(f"waited {LOCK_TIMEOUT:.0f} s for another process fetching {entry.id}",
                         "if no other mobilenet-zoo is running, run `mobilenet-zoo cache prune`") from None


def _cache_hit(cache: Cache, entry: Entry, release: Release, expected: str | None) -> FetchResult | None:
    found = cache.lookup(entry, release)
    if found is None:
        return None
    path, manifest = found
    if expected and manifest.archive_sha256 != expected:
        return None  # built from other bytes than the ones we now insist on: refetch
    return FetchResult(entry.id, release.release, path, manifest.archive_sha256, 0, True,
                       trusted_on_first_use=manifest.trusted_on_first_use)


def _fetch_locked(cache: Cache, entry: Entry, release: Release, expected: str | None, from_tofu: bool,
                  sources: list[Source], opts: FetchOptions) -> FetchResult:
    failures: list[str] = []
    for source in sources:
        try:
            return _fetch_from(cache, entry, release, expected, from_tofu, source, opts)
        except UnsafeArchiveError:
            raise  # the bytes matched the digest we trust: another source will not be better
        except (DownloadError, IntegrityError) as exc:
            if len(sources) == 1:
                raise
            failures.append(f"{source.label}: {exc.message.splitlines()[0]}")
    raise DownloadError(f"[{entry.id}] every source failed:\n  " + "\n  ".join(failures),
                        hint="check the mirrors' contents and your network; partial downloads are kept "
                             "and resumed by the next run")


def _fetch_from(cache: Cache, entry: Entry, release: Release, expected: str | None, from_tofu: bool,
                source: Source, opts: FetchOptions) -> FetchResult:
    from .download import DownloadPolicy, download, remove_partial

    partial = cache.adopt_partial(entry, release)
    staging = cache.staging_dir(entry, release)
    unpacker = _StreamingUnpacker(staging / layout.MODEL_DIR, entry.id) if opts.stream_unpack else None
    progress = (lambda done, total: opts.progress(entry, done, total)) if opts.progress else None
    try:
        try:
            result = download(source.url, partial, expected_size=release.size_bytes, expected_sha256=expected,
                              policy=opts.policy or DownloadPolicy(), progress=progress, sink=unpacker,
                              label=entry.id)
        except BaseException:
            if unpacker:
                unpacker.abandon()
            raise
        files = unpacker.finish() if unpacker else None
        if files is None:  # streaming was off or could not follow the download: unpack from the file
            from .unpack import unpack_archive

            remove_tree(staging / layout.MODEL_DIR)
            files = unpack_archive(partial, staging / layout.MODEL_DIR, label=entry.id)
    except (UnsafeArchiveError, IntegrityError):
        remove_partial(partial)  # refused or damaged bytes are never resumed from
        remove_tree(staging)
        raise
    except BaseException:
        remove_tree(staging)
        raise

    trusted_now = expected is None
    manifest = Manifest(entry.id, release.release, release.url, result.sha256, result.size,
                        tuple((f.path, f.size, f.sha256) for f in files), trusted_now or from_tofu,
                        time.time(), opts.keep_archive)
    try:
        atomic_write_json(staging / layout.MANIFEST, manifest.to_json())
        if opts.keep_archive:
            os.replace(partial, staging / layout.ARCHIVE)
        remove_partial(partial)
        fsync_dir(staging)
        final = cache.entry_dir(entry, release)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, final)
        except OSError:
            # Someone else (racing without the lock) published first; theirs is as good as ours.
            remove_tree(staging)
            if cache.lookup(entry, release) is None:
                raise
        fsync_dir(final.parent)
    except BaseException:
        remove_tree(staging)
        raise
    if trusted_now:
        TrustStore(cache.root).record(entry, release, result.sha256, result.size)
        opts.warn(f"{entry.id}@{release.release}: upstream publishes no sha256; trusting this first download "
                  f"(sha256 {result.sha256}) and insisting on it from now on")
    return FetchResult(entry.id, release.release, final, result.sha256, result.bytes_transferred, False,
                       source.label, trusted_now or from_tofu)


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
    """Unpacks the tarball while it downloads (a ``zoo.download.Sink``).

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
        if self._pipe is not None:
            self._pipe.put(bytes(chunk))

    def finish(self):
        if self._thread is None or self._pipe is None:
            return None
        self._pipe.put(None)
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, ZooError):  # refused (UnsafeArchiveError) or damaged (IntegrityError)
                raise self._error
            raise UnsafeArchiveError(str(self._error), archive=self.label)
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
        if on_done:
            on_done(*outcome)
        return outcome

    if jobs <= 1 or len(pairs) <= 1:
        return [one(p) for p in pairs]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, pairs))
