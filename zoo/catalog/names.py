"""Turning the names people type into catalog ids.

Pure functions: no I/O. ``normalize`` maps every spelling of a model to one key;
``aliases_for`` lists the keys an entry answers to. The catalog builds its index
from these once.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

_DECIMAL = re.compile(r"\d+\.\d+")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def _canonical_decimal(match: re.Match) -> str:
    return repr(float(match.group(0)))  # "0.50" -> "0.5", "1.00" -> "1.0"


def normalize(name: str) -> str:
    """Fold case, separators, archive suffixes, a `mobilenet_` prefix and decimal spelling."""
    key = name.strip().lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if key.endswith(suffix):
            key = key[: -len(suffix)]
            break
    key = key.replace("-", "_").replace(" ", "_")
    key = _DECIMAL.sub(_canonical_decimal, key)
    if key.startswith("mobilenet_"):
        key = key[len("mobilenet_"):]
    elif key.startswith("mobilenet") and key[9:10] == "v":  # "mobilenetv2_1.0_224"
        key = key[len("mobilenet"):]
    if re.fullmatch(r"\d\.\d+_\d+(_quant)?", key):
        key = "v1_" + key  # the upstream v1 README names models by bare "1.0_224"
    return key


def url_stem(url: str) -> str:
    """The tarball name without its suffix: `.../quantized_v2_224_140.tgz` -> `quantized_v2_224_140`."""
    name = PurePosixPath(urlparse(url).path).name
    for suffix in _ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def aliases_for(model_id: str, urls: list[str], extra: list[str] = ()) -> set[str]:
    """Every normalized key that should resolve to ``model_id``."""
    keys = {normalize(model_id)}
    keys.update(normalize(url_stem(u)) for u in urls)
    keys.update(normalize(a) for a in extra)
    return keys


def split_release(name: str) -> tuple[str, str | None]:
    """`v1_1.0_224@2018_02_22` -> ("v1_1.0_224", "2018_02_22")."""
    if "@" in name:
        base, _, release = name.partition("@")
        return base, release.strip() or None
    return name, None
