"""A parsed copy of the catalog, so the light commands skip the YAML parser (~20 ms).

The YAML is the truth. After a successful parse its ``models`` list is written as JSON to
``<state>/parsed-catalogs/<checksum of the path>.json``, where ``<state>`` is the per-user,
per-machine folder of the `bench` profile (``config.profile_path().parent``), never the model
cache: a cache may be shared with other people, and a planted copy there could change the
pins that every cached model is checked against. The copy is keyed by the YAML file's path,
size, mtime, inode and CRC-32 (so a stale copy is never used), written 0600, and read only if
it is a regular file (no link followed) owned by this user and writable by nobody else.

It is still untrusted input (a damaged disk, an older version of this program): every entry
goes through the same validation as the YAML, and anything wrong with the copy means "parse
the YAML again", never an error and never a wrong catalog. Writing is atomic and best effort:
an unwritable folder only costs the speed-up.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

from .. import config

FORMAT = 3  # bump when the cached shape or the validation rules change
DIR = "parsed-catalogs"
MAX_BYTES = 16 << 20  # the shipped catalog's copy is ~150 kB


def _key(source: Path, stat: os.stat_result, data: bytes) -> dict[str, Any]:
    from .. import __version__

    # The CRC of the bytes (~0.1 ms for the shipped catalog) catches an edit that kept the
    # size and mtime (a copy with preserved times, a coarse-mtime file system).
    return {"format": FORMAT, "zoo": __version__, "path": str(source), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino, "crc32": zlib.crc32(data)}


def cache_file(source: Path) -> Path:
    # A short, stable name per catalog path (hashlib would cost ~2 ms of start-up to import).
    tag = zlib.crc32(str(source).encode()) ^ (zlib.adler32(str(source).encode()) << 32)
    return config.profile_path().parent / DIR / f"{tag:016x}.json"


def load_models(source: Path, stat: os.stat_result, data: bytes) -> list[dict] | None:
    """The cached raw ``models`` list for this exact file (``data`` = its bytes), or None."""
    from .._util.atomic import read_json

    cached = read_json(cache_file(source), MAX_BYTES, private=True)
    if not isinstance(cached, dict) or cached.get("key") != _key(source, stat, data):
        return None
    models = cached.get("models")
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        return None
    return models


def store_models(source: Path, stat: os.stat_result, data: bytes, models: list[dict]) -> None:
    """Remember a validated ``models`` list (silently skipped if the cache is not writable)."""
    from .._util.atomic import atomic_write_json

    try:
        plain = json.loads(json.dumps(models))
    except (TypeError, ValueError):
        return
    if plain != models:  # something JSON cannot hold exactly (non-string keys, ...): do not cache
        return
    try:
        atomic_write_json(cache_file(source), {"key": _key(source, stat, data), "models": plain}, mode=0o600)
    except OSError:
        pass
