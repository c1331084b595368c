"""`fetch --from FILE.tgz MODEL`: take in a tarball copied by hand (air-gapped sites).

The file goes through exactly the path a download takes (``fetching.fetch_entry`` with the
file as the only source): copied into a private partial while hashed and unpacked,
verified against the catalog's pin (or the digest recorded on first use; with neither,
recorded now, as a first download would be), then published by one rename. Before
anything is written the file is hashed once, so a wrong file is refused with both digests
and the cache is not touched.
"""

from __future__ import annotations

from pathlib import Path

from ..catalog.registry import Entry, Release
from ..errors import IntegrityError, UsageError
from .fetcher import FetchOptions, FetchResult, expected_digest, fetch_entry
from .mirrors import Source


def fetch_from_file(entry: Entry, release: Release, archive: Path, opts: FetchOptions) -> FetchResult:
    """Verify ``archive`` as ``entry@release`` and publish it in the cache like a download."""
    from .hashing import sha256_file

    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise UsageError(f"archive {archive}: no such file", params=("archive",),
                         hint="give the path of the .tgz copied from the model's URL "
                              f"({release.url})")
    expected, from_first_use = expected_digest(entry, release, opts.cache_dir)
    if expected is not None:
        actual = sha256_file(archive)
        if actual != expected:
            where = "recorded on first use" if from_first_use else "pinned by the catalog"
            raise IntegrityError(
                f"{archive} is not {entry.spec(release)}:\n"
                f"  expected sha256 {expected} ({where})\n"
                f"  actual   sha256 {actual}, size {archive.stat().st_size:,} bytes\n"
                "  nothing was written to the cache",
                hint=f"copy the file from {release.url} again (and check the copy completed)")
    source = Source(archive.resolve().as_uri(), f"file {archive}", True)
    return fetch_entry(entry, release, opts, sources=[source])
