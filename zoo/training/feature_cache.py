"""Feature passes kept in the model cache, keyed by what they are, so a later run skips the backbone.

    store = FeatureStore(cache_root)
    with store.slot(key, about) as directory:        # locked while it is filled
        features = extract_features(..., directory, "features", ...)

A sweep (another learning rate, more epochs, another ``val_split`` that leaves a set's files as
they were) pays for the backbone pass once. The key is a digest of everything a feature depends
on: the backbone's weights (their bytes, so a trained backbone has its own key), the input size
and crop, the augmented views and their seed, the int8 backbone's calibration files, and the
image listing (every file's path, size, mtime and class: a touched file is another set).

Layout: ``<cache>/.features/<key>/`` with ``features.npy``, ``features.rows.json`` (how many rows
are on disk: ``zoo.training.features``) and ``about.json`` (what it is, for ``cache ls``). A set
being filled is locked (``<cache>/.locks/features-<key>.lock``); a second run with the same key
waits and then reuses it; a killed run's half set is carried on by the next. Sets cost disk:
rows x features x 4 bytes (1797 digits through v1 0.25: 3 MB; 10,000 images through v2 1.0 at
1280 features, two views: 100 MB); ``cache ls --features`` shows them and ``cache prune
--features`` removes them. A set another user made is not ours to write: such a run computes in
a private temporary folder instead. Light on purpose (no numpy at import): `cache ls` reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import CacheError
from ..fetching import layout
from ..fetching.locking import CacheLock, LockTimeout
from .._util.atomic import atomic_write_json, read_json
from .._util.safepath import inside, remove_tree

FORMAT = 1  # bump when what a set holds changes: old sets then simply stop matching
ROWS_NAME = "features"
ABOUT = "about.json"
WAIT_S = 3600.0


def backbone_digest(backbone: Any) -> str:
    """sha256 of the backbone's weights (dtype, shape and bytes of each, in order)."""
    import numpy as np

    digest = hashlib.sha256()
    for weight in backbone.get_weights():
        array = np.ascontiguousarray(weight)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def feature_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **parts}, sort_keys=True).encode()).hexdigest()[:40]


@dataclass
class FeatureSet:
    """One set in the cache, as ``cache ls --features`` shows it."""

    path: Path
    about: dict[str, Any]
    size_bytes: int
    complete: bool


class FeatureStore:
    def __init__(self, cache_root: Path):
        self.root = Path(cache_root)

    @property
    def folder(self) -> Path:
        return inside(self.root, layout.FEATURES_DIR, what="cache folder")

    @contextlib.contextmanager
    def slot(self, key: str, about: dict[str, Any], on_wait: Any = None) -> Iterator[Path]:
        """The folder of set ``key``, locked while the block runs (a private temporary folder when
        the cache's copy is not ours to write)."""
        folder = inside(self.root, layout.FEATURES_DIR, key, what="feature set")
        if os.path.lexists(folder.parent) and not folder.parent.is_dir():
            raise CacheError(f"refusing the feature cache {folder.parent}: it is not a folder",
                             f"move it away or remove it (`rm {folder.parent}`); finetune then recreates it")
        with self._lock(key, WAIT_S, on_wait):
            if not _ours(folder):
                with tempfile.TemporaryDirectory(prefix="mobilenet-zoo-features-") as private:
                    yield Path(private)
                return
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / ABOUT, {**about, "key": key, "used": time.time()})
            yield folder

    def _lock(self, key: str, timeout: float, on_wait: Any = None) -> CacheLock:
        return CacheLock(inside(self.root, layout.LOCK_DIR, f"features-{key}.lock", what="lock file"),
                         timeout=timeout, what="feature pass", on_wait=on_wait)

    def sets(self) -> list[FeatureSet]:
        """Every set (links and foreign names are skipped, never followed)."""
        found: list[FeatureSet] = []
        try:
            children = sorted(os.scandir(self.folder), key=lambda d: d.name)
        except (OSError, CacheError):  # none yet, or `.features` is a planted link: nothing to list
            return found
        for child in children:
            if not child.is_dir(follow_symlinks=False) or not _KEY.fullmatch(child.name):
                continue
            path = Path(child.path)
            about = _shown(read_json(path / ABOUT, 1 << 16))
            rows = read_json(path / f"{ROWS_NAME}.rows.json", 4096)
            shape = rows.get("shape") if isinstance(rows, dict) else None
            complete = (isinstance(shape, list) and len(shape) == 2 and isinstance(shape[0], int)
                        and rows.get("rows") == shape[0] // (2 if about.get("int8") else 1))
            found.append(FeatureSet(path, about, _plain_files_size(path), bool(complete)))
        return found

    def prune(self, *, everything: bool, dry_run: bool = False) -> list[tuple[Path, str]]:
        """Remove half-filled sets nobody is filling (a killed run's), and with ``everything`` every
        set nobody is filling. Returns (path, why) for each."""
        removed = []
        for found in self.sets():
            if found.complete and not everything:
                continue
            why = "a feature set" if found.complete else "a half-filled feature set of a run that stopped"
            try:
                with self._lock(found.path.name, 0):
                    if not dry_run:
                        remove_tree(found.path)
            except LockTimeout:
                continue  # being filled right now
            removed.append((found.path, why))
        return removed


_KEY = re.compile(r"[0-9a-f]{40}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(about: Any) -> dict[str, Any]:
    """The fields of an ``about.json`` worth showing, typed and stripped of terminal controls
    (the file is untrusted: anyone who can write the cache wrote it)."""
    about = about if isinstance(about, dict) else {}
    shown: dict[str, Any] = {}
    for name in ("model", "phase", "split", "data", "created"):
        value = about.get(name)
        shown[name] = _CONTROL.sub("?", value)[:300] if isinstance(value, str) else None
    images = about.get("images")
    shown["images"] = images if isinstance(images, int) and not isinstance(images, bool) and images >= 0 else None
    shown["int8"] = about.get("int8") is True
    return shown


def _plain_files_size(folder: Path) -> int:
    total = 0
    try:
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        pass  # removed while we looked
    return total


def _ours(folder: Path) -> bool:
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return True
    return stat.S_ISDIR(st.st_mode) and (not hasattr(os, "geteuid") or st.st_uid == os.geteuid())

