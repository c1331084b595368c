"""Where things live inside the cache, and how to find a model's files once unpacked.

    <cache>/<model_id>/<release>/            one verified entry (appears by atomic rename)
        model/                               the tarball's members, exactly as upstream laid them out
        manifest.json                        url, archive sha256 and size, and every file's size and sha256
        archive.tgz                          the verified tarball itself (kept unless disabled)
    <cache>/.partial/<model_id>@<release>.<host>.pid<N>.<tag>.part   a download in progress (resumable,
                                             adopted by a later run on <host> once process N is gone), with .part.json
    <cache>/.staging/<model_id>@<release>.<host>.pid<N>.<tag>/       an unpack in progress (never trusted)
    <cache>/.locks/                          file locks (each names its holder)
    <cache>/trusted.json                     digests recorded on first use for models upstream never pinned

Path arithmetic through ``zoo._util.safepath.inside`` (every path provably under the cache root,
no symlink followed on the way): no network, no heavy imports. Which file inside ``model/``
plays which role is ``zoo.fetching.roles``' business.
"""

from __future__ import annotations

from pathlib import Path

from ..catalog.registry import Entry, Release
from ..errors import CacheError
from .._util.safepath import inside

MODEL_DIR = "model"
MANIFEST = "manifest.json"
ARCHIVE = "archive.tgz"
PARTIAL_DIR = ".partial"
STAGING_DIR = ".staging"
LOCK_DIR = ".locks"
FEATURES_DIR = ".features"  # fine-tuning's feature passes (zoo.training.feature_cache)
TRUST_FILE = "trusted.json"


def entry_dir(cache: Path, entry: Entry, release: Release) -> Path:
    """``<cache>/<id>/<release>``; CacheError if that would leave the cache or pass a symlink."""
    return inside(cache, entry.id, release.release, what=f"cache entry of {entry.id}")


def lock_path(cache: Path, entry: Entry, release: Release) -> Path:
    return inside(cache, LOCK_DIR, f"{entry.id}@{release.release}.lock", what=f"lock file of {entry.id}")


def cached_releases(cache: Path, entry: Entry) -> list[str]:
    """Names of the releases of ``entry`` with a complete entry in ``cache`` (cheap: stat only)."""
    out = []
    for r in entry.releases:
        try:
            if (entry_dir(cache, entry, r) / MANIFEST).is_file():
                out.append(r.release)
        except CacheError:
            continue
    return out


def spec_for_path(entry: Entry, path: Path) -> str:
    """``id`` or ``id@release`` for a file inside a cache entry (``<cache>/<id>/<release>/...``);
    just ``id`` for a file elsewhere. Used in hints such as `verify --repair ...`."""
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part == entry.id and i + 1 < len(parts):
            return entry.spec(parts[i + 1]) if any(r.release == parts[i + 1] for r in entry.releases) else entry.id
    return entry.id
