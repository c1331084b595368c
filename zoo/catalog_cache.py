"""A parsed copy of the catalog, so the light commands skip the YAML parser (~20 ms).

The YAML is the truth. After a successful parse its ``models`` list is written as JSON to
``<cache>/.catalog/<checksum of the path>.json``, keyed by the YAML file's path, size,
mtime, inode and CRC-32 (so a stale copy is never used). A later run whose key matches loads that JSON (~1 ms) and still runs
every entry through the same validation as the YAML path: the file is untrusted input
(another user, a damaged disk, an older version of this program), so anything wrong with
it (unreadable, other key, other schema, an entry that fails validation) means "parse the
YAML again", never an error and never a wrong catalog. Writing is atomic and best effort:
a read-only cache only costs the speed-up.

Trust: the copy sits in the model cache and is exactly as trusted as the models next to
it (whoever can write there can already replace a model); it adds no new way in.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

from . import config

FORMAT = 1  # bump when the cached shape or the validation rules change
DIR = ".catalog"


def _key(source: Path, stat: os.stat_result, data: bytes) -> dict[str, Any]:
    from . import __version__

    # The CRC of the bytes (~0.1 ms for the shipped catalog) catches an edit that kept the
    # size and mtime (a copy with preserved times, a coarse-mtime file system).
    return {"format": FORMAT, "zoo": __version__, "path": str(source), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino, "crc32": zlib.crc32(data)}


def cache_file(source: Path) -> Path:
    # A short, stable name per catalog path (hashlib would cost ~2 ms of start-up to import).
    tag = zlib.crc32(str(source).encode()) ^ (zlib.adler32(str(source).encode()) << 32)
    return config.cache_dir() / DIR / f"{tag:016x}.json"


def load_models(source: Path, stat: os.stat_result, data: bytes) -> list[dict] | None:
    """The cached raw ``models`` list for this exact file (``data`` = its bytes), or None."""
    try:
        cached = json.loads(cache_file(source).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("key") != _key(source, stat, data):
        return None
    models = cached.get("models")
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        return None
    return models


def store_models(source: Path, stat: os.stat_result, data: bytes, models: list[dict]) -> None:
    """Remember a validated ``models`` list (silently skipped if the cache is not writable)."""
    from .atomic import atomic_write_json

    try:
        plain = json.loads(json.dumps(models))
    except (TypeError, ValueError):
        return
    if plain != models:  # something JSON cannot hold exactly (non-string keys, ...): do not cache
        return
    try:
        atomic_write_json(cache_file(source), {"key": _key(source, stat, data), "models": plain})
    except OSError:
        pass
