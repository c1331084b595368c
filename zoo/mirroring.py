"""`mirror DIR`: download and verify tarballs into the layout `--mirror` reads.

A team runs this once, serves DIR with any static web server or object store (or shares
it as a directory), and every machine fetches with ``--mirror``. Files appear under their
final name only after their sha256 matched (pinned, or recorded on first use).
"""

from __future__ import annotations

import os
from pathlib import Path

from .cache import TrustStore
from .catalog import Entry, Release
from .fetching import FetchOptions, FetchResult, expected_digest
from .mirrors import mirror_path, sources_for


def mirror_one(directory: Path, entry: Entry, release: Release, opts: FetchOptions) -> FetchResult:
    from .download import DownloadPolicy, download
    from .hashing import sha256_file

    target = Path(directory) / mirror_path(release.url)
    expected, _ = expected_digest(entry, release, opts.cache_dir)
    if target.is_file():
        digest = sha256_file(target)
        if expected is None or digest == expected:
            return FetchResult(entry.id, release.release, target, digest, 0, True, "mirror directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.pid{os.getpid()}.part")
    last_error = None
    for source in sources_for(release.url, [m for m in opts.mirrors], offline=opts.offline):
        try:
            result = download(source.url, partial, expected_size=release.size_bytes, expected_sha256=expected,
                              policy=opts.policy or DownloadPolicy(), label=entry.id,
                              progress=(lambda d, t: opts.progress(entry, d, t)) if opts.progress else None)
            break
        except Exception as exc:  # try the next source; the last error is raised below
            last_error = exc
    else:
        raise last_error  # type: ignore[misc]
    os.replace(partial, target)
    Path(str(partial) + ".json").unlink(missing_ok=True)
    if expected is None:
        TrustStore(opts.cache_dir).record(entry, release, result.sha256, result.size)
        opts.warn(f"{entry.id}@{release.release}: upstream publishes no sha256; recorded {result.sha256} on first use")
    return FetchResult(entry.id, release.release, target, result.sha256, result.bytes_transferred, False,
                       source.label)
