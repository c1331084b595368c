"""`verify`: re-hash what the cache holds, and optionally repair it.

Repair never throws away what can prove itself: an entry whose kept ``archive.tgz`` still
hashes to the pinned (or first-use) digest is unpacked again from it, with no network (so
``verify --repair --offline`` works); only when the archive itself is bad or missing is the
model downloaded again. The damaged entry stays in place until its replacement is complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from .cache import Cache
from .manifest import ManifestError, deep_problems, load_manifest
from ..catalog.registry import Entry, Release
from ..errors import ZooError
from .fetcher import FetchOptions, expected_digest, fetch_entry, rebuild_from_kept_archive


@dataclass(frozen=True)
class VerifyReport:
    id: str
    release: str
    status: str               # "ok", "broken", "missing", "repaired", "repair-failed", "error"
    problems: tuple[str, ...] = ()
    how: str | None = None    # repaired "from the kept archive" or "by downloading again"

    def to_json(self) -> dict:
        return {"id": self.id, "release": self.release, "status": self.status, "problems": list(self.problems),
                "repaired_by": self.how}


def entry_problems(cache: Cache, entry: Entry, release: Release, expected: str | None) -> list[str] | None:
    """Everything wrong with the cached entry (empty: verified); None when there is none."""
    path = cache.entry_dir(entry, release)
    if not os.path.lexists(path):
        return None
    try:
        manifest = load_manifest(path)
    except ManifestError as exc:
        return [f"manifest.json is damaged: {exc.reason}"]
    if manifest is None:
        return ["manifest.json is missing"]
    problems = []
    if (manifest.model_id, manifest.release) != (entry.id, release.release):
        problems.append(f"manifest.json describes {manifest.model_id}@{manifest.release}")
    if manifest.url != release.url:
        problems.append(f"fetched from {manifest.url}, the catalog now says {release.url}")
    return problems + deep_problems(path, manifest, expected)


def verify_entry(entry: Entry, release: Release, opts: FetchOptions, *, repair: bool = False) -> VerifyReport:
    cache = Cache(opts.cache_dir)
    try:
        expected, _ = expected_digest(entry, release, cache.root)
        problems = entry_problems(cache, entry, release, expected)
    except ZooError as exc:  # a link planted in the cache, a damaged trust store: this model only
        return VerifyReport(entry.id, release.release, "error", (exc.message,) + ((exc.hint,) if exc.hint else ()))
    if problems is None:
        return VerifyReport(entry.id, release.release, "missing")
    if not problems:
        return VerifyReport(entry.id, release.release, "ok")
    if not repair:
        return VerifyReport(entry.id, release.release, "broken", tuple(problems))
    try:
        if rebuild_from_kept_archive(cache, entry, release, expected, opts):
            return VerifyReport(entry.id, release.release, "repaired", tuple(problems), "from the kept archive")
        fetch_entry(entry, release, opts, force=True)
    except ZooError as exc:  # reported, not raised: verify goes on with the other models
        return VerifyReport(entry.id, release.release, "repair-failed", (*problems, f"repair failed: {exc.message}"))
    return VerifyReport(entry.id, release.release, "repaired", tuple(problems), "by downloading again")


def cached_pairs(catalog, cache: Cache) -> Sequence[tuple[Entry, Release]]:
    """Every (entry, release) of the catalog that has a directory in the cache."""
    out = []
    for entry in catalog:
        for release in entry.releases:
            try:
                if os.path.lexists(cache.entry_dir(entry, release)):
                    out.append((entry, release))
            except ZooError:
                out.append((entry, release))  # reported by verify_entry
    return out
