"""The model catalog: YAML on disk -> validated, immutable entries in memory.

The YAML is parsed once, every entry checked against ``SCHEMA``, and each error names
the file, the line and the entry id. ``Catalog`` answers lookups by any alias; the
budget logic lives in ``zoo.selection`` and is reached through ``Catalog.pick``.
Nothing here imports TensorFlow, numpy or requests: `list`, `show` and `pick` stay light.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import yaml

from . import config, names
from .errors import CatalogError, UnknownModelError

FAMILIES = ("v1", "v2", "v3", "edgetpu")
# TF-slim's evaluation preprocessing, the setting behind every published top-1: central crop of
# this fraction, bilinear resize to the input size, then x / 127.5 - 1.
EVAL_CENTRAL_CROP = 0.875
V3_VARIANTS = ("large", "small", "large_minimalistic", "small_minimalistic")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Release:
    """One published tarball of a model (v1 float models have two)."""

    release: str
    url: str
    sha256: str | None
    size_bytes: int | None
    digest_source: str | None = None


@dataclass(frozen=True)
class Entry:
    """One model. Immutable; the figures are upstream's published ones."""

    id: str
    family: str
    variant: str | None
    width: float
    resolution: int
    quantized: bool
    macs_m: float
    params_m: float
    top1: float | None
    top5: float | None
    url: str
    sha256: str | None
    size_bytes: int | None
    releases: tuple[Release, ...]
    latency_ms: Mapping[str, float]
    input_size: tuple[int, int, int]
    input_range: tuple[float, float]
    input_quantization: Mapping[str, float] | None
    num_classes: int
    input_node: str
    output_node: str
    archive_root: str
    files: Mapping[str, str]
    aliases: tuple[str, ...] = ()
    # Class names of a model with its own classes (fine-tuned); None: the 1001 ImageNet labels.
    labels: tuple[str, ...] | None = None

    @property
    def model_size_mb(self) -> float:
        """Derived, never stored: 4 bytes a parameter for float, 1 for quantized (matches TFLite sizes)."""
        return round(self.params_m * (1 if self.quantized else 4), 2)

    @property
    def default_release(self) -> Release:
        return self.releases[0]

    def release(self, name: str | None) -> Release:
        """The release called ``name`` (None: the default one)."""
        if name is None:
            return self.releases[0]
        for rel in self.releases:
            if rel.release == name:
                return rel
        raise UnknownModelError(f"{self.id}@{name}", [f"{self.id}@{r.release}" for r in self.releases])

    def latency(self, device: str) -> float | None:
        return self.latency_ms.get(device)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """How images must be prepared for this model (what `classify` does)."""
        h, w, _ = self.input_size
        steps = {"color": "RGB", "central_crop": EVAL_CENTRAL_CROP, "resize": [h, w], "resize_method": "bilinear",
                 "scale": f"x / 127.5 - 1 -> [{self.input_range[0]:g}, {self.input_range[1]:g}]"}
        if self.input_quantization:
            steps["tflite_uint8_input"] = (f"q = x / {self.input_quantization['scale']:g} + "
                                           f"{self.input_quantization['zero_point']:g}")
        return steps

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by `list --json`, `show --json` and `pick --json`."""
        return {
            "id": self.id, "family": self.family, "variant": self.variant,
            "width": self.width, "resolution": self.resolution, "quantized": self.quantized,
            "macs_m": self.macs_m, "params_m": self.params_m, "model_size_mb": self.model_size_mb,
            "top1": self.top1, "top5": self.top5,
            "url": self.url, "sha256": self.sha256, "size_bytes": self.size_bytes,
            "releases": [
                {"release": r.release, "url": r.url, "sha256": r.sha256, "size_bytes": r.size_bytes}
                for r in self.releases
            ],
            "latency_ms": dict(self.latency_ms),
            "input_size": list(self.input_size), "input_range": list(self.input_range),
            "input_quantization": dict(self.input_quantization) if self.input_quantization else None,
            "num_classes": self.num_classes,
            "input_node": self.input_node, "output_node": self.output_node,
            "archive_root": self.archive_root, "files": dict(self.files),
            "aliases": list(self.aliases),
        }


# ----------------------------------------------------------------------------- schema
# key -> (types allowed, required). `None` in the types means the value may be null.
_NUM = (int, float)
SCHEMA: dict[str, tuple[tuple, bool]] = {
    "id": ((str,), True),
    "family": ((str,), True),
    "variant": ((str, type(None)), False),
    "width": (_NUM, True),
    "resolution": ((int,), True),
    "quantized": ((bool,), True),
    "macs_m": (_NUM, True),
    "params_m": (_NUM, True),
    "top1": (_NUM + (type(None),), True),
    "top5": (_NUM + (type(None),), True),
    "url": ((str,), True),
    "sha256": ((str, type(None)), True),
    "size_bytes": ((int, type(None)), True),
    "releases": ((list,), False),
    "latency_ms": ((dict,), True),
    "input_size": ((list,), True),
    "input_range": ((list,), True),
    "input_quantization": ((dict, type(None)), True),
    "num_classes": ((int,), True),
    "input_node": ((str,), True),
    "output_node": ((str,), True),
    "archive_root": ((str,), False),
    "files": ((dict,), True),
    "aliases": ((list,), False),
    "labels": ((list, type(None)), False),  # own class names (e.g. a fine-tuned model); default ImageNet's
}
_RELEASE_KEYS = {"release", "url", "sha256", "size_bytes", "digest_source"}


class _LineMap(dict):
    """A dict that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML loader that records line numbers and refuses duplicate keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LineMap:
    loader.flatten_mapping(node)
    result = _LineMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise CatalogError(f"duplicate key {key!r} in one mapping", line=key_node.start_mark.line + 1)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _type_name(types: tuple) -> str:
    words = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list",
             dict: "mapping", type(None): "null"}
    return " or ".join(dict.fromkeys(words[t] for t in types))


def _check_type(value: Any, types: tuple) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # YAML `true` is not a number
    return isinstance(value, types)


def _entry_from_mapping(raw: _LineMap, path: str) -> Entry:
    model_id = raw.get("id") if isinstance(raw.get("id"), str) else None

    def fail(message: str, key: str | None = None) -> CatalogError:
        line = raw.key_lines.get(key, raw.line) if key else raw.line
        return CatalogError(message, path=path, line=line, entry_id=model_id)

    for key in raw:
        if key not in SCHEMA:
            raise fail(f"unknown field {key!r} (known fields: {', '.join(SCHEMA)})", key)
    for key, (types, required) in SCHEMA.items():
        if key not in raw:
            if required:
                raise fail(f"missing required field {key!r}")
            continue
        if not _check_type(raw[key], types):
            raise fail(f"field {key!r} must be {_type_name(types)}, got {raw[key]!r}", key)

    family = raw["family"]
    if family not in FAMILIES:
        raise fail(f"unknown family {family!r} (expected one of {', '.join(FAMILIES)})", "family")
    variant = raw.get("variant")
    if family == "v3" and variant not in V3_VARIANTS:
        raise fail(f"v3 models need variant one of {', '.join(V3_VARIANTS)}, got {variant!r}", "variant")
    for key in ("width", "macs_m", "params_m", "resolution", "num_classes"):
        if raw[key] <= 0:
            raise fail(f"field {key!r} must be positive, got {raw[key]!r}", key)
    for key in ("top1", "top5"):
        if raw[key] is not None and not 0 <= raw[key] <= 100:
            raise fail(f"field {key!r} is a percentage, got {raw[key]!r}", key)
    if raw["sha256"] is not None and not _SHA256.fullmatch(raw["sha256"]):
        raise fail("field 'sha256' must be 64 lowercase hex digits", "sha256")
    if raw["size_bytes"] is not None and raw["size_bytes"] <= 0:
        raise fail("field 'size_bytes' must be positive", "size_bytes")
    if not raw["url"].startswith(("http://", "https://", "file://")):
        raise fail(f"field 'url' must be an http(s) or file URL, got {raw['url']!r}", "url")
    for device, ms in raw["latency_ms"].items():
        if not isinstance(device, str) or not _check_type(ms, _NUM) or ms <= 0:
            raise fail(f"latency_ms must map device names to positive milliseconds, got {device!r}: {ms!r}",
                       "latency_ms")
    size = raw["input_size"]
    if len(size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise fail(f"input_size must be [height, width, channels], got {size!r}", "input_size")
    rng = raw["input_range"]
    if len(rng) != 2 or not all(_check_type(v, _NUM) for v in rng) or rng[0] >= rng[1]:
        raise fail(f"input_range must be [low, high], got {rng!r}", "input_range")
    quant = raw["input_quantization"]
    if quant is not None and (set(quant) != {"scale", "zero_point"}
                              or not all(_check_type(v, _NUM) for v in quant.values())):
        raise fail("input_quantization must be {scale: number, zero_point: integer} or null",
                   "input_quantization")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in raw["files"].items()):
        raise fail("files must map roles (checkpoint, frozen_graph, tflite, ...) to paths", "files")

    releases = []
    for rel in raw.get("releases") or [{"release": "default", "url": raw["url"],
                                        "sha256": raw["sha256"], "size_bytes": raw["size_bytes"]}]:
        if not isinstance(rel, dict) or not {"release", "url"} <= set(rel) or set(rel) - _RELEASE_KEYS:
            raise fail("each release needs release and url (optional: sha256, size_bytes, digest_source)",
                       "releases")
        sha, size_b = rel.get("sha256"), rel.get("size_bytes")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise fail(f"release {rel['release']!r}: sha256 must be 64 lowercase hex digits", "releases")
        if size_b is not None and (not isinstance(size_b, int) or isinstance(size_b, bool) or size_b <= 0):
            raise fail(f"release {rel['release']!r}: size_bytes must be a positive integer", "releases")
        releases.append(Release(str(rel["release"]), rel["url"], sha, size_b, rel.get("digest_source")))
    if len({r.release for r in releases}) != len(releases):
        raise fail("two releases share one name", "releases")
    first = releases[0]
    if (first.url, first.sha256, first.size_bytes) != (raw["url"], raw["sha256"], raw["size_bytes"]):
        raise fail("url/sha256/size_bytes must repeat the first (default) release's values", "url")

    labels = raw.get("labels")
    if labels is not None and (len(labels) != raw["num_classes"] or not all(isinstance(x, str) for x in labels)):
        raise fail(f"labels must list num_classes ({raw['num_classes']}) class names", "labels")
    return Entry(
        id=raw["id"], family=family, variant=variant, width=float(raw["width"]),
        resolution=raw["resolution"], quantized=raw["quantized"],
        macs_m=raw["macs_m"], params_m=raw["params_m"], top1=raw["top1"], top5=raw["top5"],
        url=raw["url"], sha256=raw["sha256"], size_bytes=raw["size_bytes"], releases=tuple(releases),
        latency_ms=MappingProxyType(dict(raw["latency_ms"])),
        input_size=tuple(size), input_range=(float(rng[0]), float(rng[1])),
        input_quantization=MappingProxyType(dict(quant)) if quant else None,
        num_classes=raw["num_classes"], input_node=raw["input_node"], output_node=raw["output_node"],
        archive_root=raw.get("archive_root", "."), files=MappingProxyType(dict(raw["files"])),
        aliases=tuple(raw.get("aliases") or ()), labels=tuple(labels) if labels is not None else None,
    )


def parse_catalog(text: str, path: str = "<catalog>") -> list[Entry]:
    """Parse and validate catalog YAML text into entries (no lookups, no profile merge)."""
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except CatalogError as exc:
        raise CatalogError(exc.message, path=path, line=exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError(f"malformed YAML: {problem}", path=path,
                           line=mark.line + 1 if mark else None) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise CatalogError("expected a mapping with a `models:` list", path=path,
                           line=getattr(doc, "line", None))
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for raw in doc["models"]:
        if not isinstance(raw, dict):
            raise CatalogError(f"each model must be a mapping, got {raw!r}", path=path,
                               line=getattr(doc, "key_lines", {}).get("models"))
        entry = _entry_from_mapping(raw, path)
        if entry.id in seen:
            raise CatalogError(f"duplicate id (first defined at line {seen[entry.id]})", path=path,
                               line=raw.line, entry_id=entry.id)
        seen[entry.id] = raw.line
        entries.append(entry)
    return entries


def default_catalog_path() -> Path:
    """The catalog shipped inside the package (the repository's catalog.yaml in a checkout)."""
    return Path(__file__).resolve().parent / "catalog.yaml"  # importlib.resources costs ~7 ms at start-up


@dataclass
class Catalog:
    """All entries plus an alias index. Build with ``load_catalog``."""

    entries: tuple[Entry, ...]
    path: str = "<catalog>"
    _index: dict[str, str] = field(default_factory=dict, repr=False)
    _by_id: dict[str, Entry] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.entries}
        owners: dict[str, str] = {}
        for entry in self.entries:
            for key in names.aliases_for(entry.id, [r.url for r in entry.releases], entry.aliases):
                if owners.get(key, entry.id) != entry.id:
                    raise CatalogError(f"alias {key!r} is claimed by both {owners[key]!r} and {entry.id!r}",
                                       path=self.path, entry_id=entry.id)
                owners[key] = entry.id
        # Canonical ids always win over another entry's derived alias.
        owners.update({names.normalize(e.id): e.id for e in self.entries})
        self._index = owners

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and names.normalize(names.split_release(name)[0]) in self._index

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def get(self, name: str) -> Entry:
        """The entry for any accepted spelling of a model (release suffix ignored)."""
        base, _ = names.split_release(name)
        model_id = self._index.get(names.normalize(base))
        if model_id is None:
            raise UnknownModelError(name, self.suggest(base))
        return self._by_id[model_id]

    def resolve(self, name: str) -> tuple[Entry, Release]:
        """Entry and release for `name` or `name@release`."""
        base, release = names.split_release(name)
        entry = self.get(base)
        return entry, entry.release(release)

    def suggest(self, name: str, n: int = 3) -> list[str]:
        key = names.normalize(name)
        close = difflib.get_close_matches(key, list(self._index), n=10, cutoff=0.6)
        out: list[str] = []
        for alias in close:
            model_id = self._index[alias]
            if model_id not in out:
                out.append(model_id)
        return out[:n]

    def filter(self, **criteria: Any) -> list[Entry]:
        """Entries matching every given criterion (see ``zoo.selection.Filters``)."""
        from .selection import Filters

        return Filters(**criteria).apply(self.entries)

    def pick(self, **limits: Any):
        """The best entry within the limits: see ``zoo.selection.pick``."""
        from .selection import Limits, pick

        return pick(self.entries, Limits(**limits))

    def frontier(self, cost: str = "macs", device: str | None = None, **criteria: Any) -> list[Entry]:
        """Pareto frontier of top-1 against a cost: see ``zoo.selection.frontier``."""
        from .selection import frontier

        return frontier(self.filter(**criteria) if criteria else list(self.entries), cost, device)

    def with_latencies(self, measured: Mapping[str, Mapping[str, float]]) -> "Catalog":
        """A copy whose entries also carry latencies measured on this machine (device `local...`)."""
        from dataclasses import replace

        if not measured:
            return self
        updated = tuple(
            replace(e, latency_ms=MappingProxyType({**e.latency_ms, **measured[e.id]}))
            if e.id in measured else e
            for e in self.entries
        )
        return Catalog(updated, self.path)

    def devices(self) -> list[str]:
        """Every device name that has at least one latency figure."""
        return sorted({d for e in self.entries for d in e.latency_ms})


def load_catalog(path: str | Path | None = None, *, with_profile: bool = True) -> Catalog:
    """Load and validate a catalog.

    ``path`` defaults to $MOBILENET_ZOO_CATALOG, then the packaged catalog. With
    ``with_profile``, latencies measured by `bench` on this machine are merged in as
    the device `local`.
    """
    source = Path(path) if path is not None else (config.catalog_path() or default_catalog_path())
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError("catalog file not found", path=str(source),
                           hint=f"check --catalog / ${config.ENV_CATALOG}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read catalog: {exc}", path=str(source)) from None
    catalog = Catalog(tuple(parse_catalog(text, str(source))), str(source))
    if with_profile:
        from .profile import read_local_latencies

        catalog = catalog.with_latencies(read_local_latencies())
    return catalog
