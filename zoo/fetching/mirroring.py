"""`mirror DIR`: download and verify tarballs into the layout `--mirror` reads.

A team runs this once, serves DIR with any static web server or object store (or shares
it as a directory), and every machine fetches with ``--mirror``. Files appear under their
final name only after their sha256 matched (pinned, or recorded on first use).
"""

from __future__ import annotations

import os
from pathlib import Path

from .._util.progress import Task
from .cache import TrustStore
from ..catalog.registry import Entry, Release
from .fetcher import FetchOptions, FetchResult, expected_digest
from ..errors import OfflineError
from .mirrors import Source, mirror_target, sources_for, try_sources
from ..notices import Notice, TrustOnFirstUseWarning


def mirror_one(directory: Path, entry: Entry, release: Release, opts: FetchOptions) -> FetchResult:
    from .download import DownloadPolicy, download
    from .partial import PARTIAL_SUFFIX, remove_partial
    from .hashing import sha256_file

    target = mirror_target(Path(directory), release.url)  # provably inside DIR, no link followed
    expected, _ = expected_digest(entry, release, opts.cache_dir)
    if target.is_file() and not target.is_symlink():
        digest = sha256_file(target)
        if expected is None or digest == expected:
            return FetchResult(entry.id, release.release, target, digest, 0, True, "mirror directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.pid{os.getpid()}{PARTIAL_SUFFIX}")
    sources = sources_for(release.url, list(opts.mirrors), offline=opts.offline, token=opts.mirror_token)

    def attempt(source: Source) -> FetchResult:
        result = download(source.url, partial, expected_size=release.size_bytes, expected_sha256=expected,
                          policy=opts.policy or DownloadPolicy(), label=entry.id, token=source.token,
                          progress=(lambda d, t, task=Task(entry.id): opts.progress(task, d, t)) if opts.progress else None)
        return FetchResult(entry.id, release.release, target, result.sha256, result.bytes_transferred, False,
                           source.label)

    def no_source() -> OfflineError:
        return OfflineError(f"{entry.id}@{release.release}: offline leaves no source to mirror from",
                            "run `mobilenet-zoo mirror` without offline, or give a file mirror (mirrors, a folder)",
                            params=("offline", "mirrors"))

    try:
        result = try_sources(sources, attempt, model=entry.id, no_source=no_source)
    except BaseException:
        remove_partial(partial)  # a mirror run keeps no resume point: nothing half-written in DIR
        raise
    os.replace(partial, target)
    remove_partial(partial)  # its sidecar
    if expected is None:
        TrustStore(opts.cache_dir).record(entry, release, result.sha256, target.stat().st_size)
        opts.warn(Notice(f"{entry.id}@{release.release}: upstream publishes no sha256; recorded {result.sha256} "
                         "on first use", TrustOnFirstUseWarning))
    return result
