"""`verify`: re-hash what the cache holds, and optionally repair it by fetching again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .cache import Cache, deep_problems, read_manifest
from .catalog import Entry, Release
from .fetching import FetchOptions, expected_digest, fetch_entry


@dataclass(frozen=True)
class VerifyReport:
    id: str
    release: str
    status: str               # "ok", "broken", "missing", "repaired", "repair-failed"
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"id": self.id, "release": self.release, "status": self.status, "problems": list(self.problems)}


def verify_entry(entry: Entry, release: Release, opts: FetchOptions, *, repair: bool = False) -> VerifyReport:
    cache = Cache(opts.cache_dir)
    path = cache.entry_dir(entry, release)
    if not path.exists():
        return VerifyReport(entry.id, release.release, "missing")
    manifest = read_manifest(path)
    expected, _ = expected_digest(entry, release, cache.root)
    problems = ["manifest.json missing or unreadable"] if manifest is None else deep_problems(path, manifest, expected)
    if not problems:
        return VerifyReport(entry.id, release.release, "ok")
    if not repair:
        return VerifyReport(entry.id, release.release, "broken", tuple(problems))
    cache.discard(path)
    try:
        fetch_entry(entry, release, opts)
    except Exception as exc:  # reported, not raised: verify goes on with the other models
        return VerifyReport(entry.id, release.release, "repair-failed", (*problems, f"re-fetch failed: {exc}"))
    return VerifyReport(entry.id, release.release, "repaired", tuple(problems))


def cached_pairs(catalog, cache: Cache) -> Sequence[tuple[Entry, Release]]:
    """Every (entry, release) of the catalog that has a directory in the cache."""
    out = []
    for entry in catalog:
        for release in entry.releases:
            if cache.entry_dir(entry, release).exists():
                out.append((entry, release))
    return out
