"""The model catalog: YAML on disk -> validated, immutable entries in memory.

The YAML is parsed once, every entry checked against ``SCHEMA``, and each error names
the file, the line and the entry id. ``Catalog`` answers lookups by any alias; the
budget logic lives in ``zoo.catalog.selection`` and is reached through ``Catalog.pick``.
Nothing here imports TensorFlow, numpy or requests: `list`, `show` and `pick` stay light.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence

from .. import config
from . import names
from ..errors import CatalogError, UnknownModelError
from .._util.safepath import SAFE_URL_PART, is_safe_name, unsafe_url_path

if TYPE_CHECKING:
    from .selection import PickResult

Cost = Literal["macs", "params", "size", "latency"]

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
    releases: tuple[Release, ...]  # the default (newest) first; the only home of url/sha256/size
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
    # Whether the tarball's layout (archive_root, files, nodes) is verified from public evidence
    # or inferred, with the sources: "verified: ..." or "inferred ...". None: not stated.
    layout_evidence: str | None = None

    @property
    def model_size_mb(self) -> float:
        """Derived, never stored: 4 bytes a parameter for float, 1 for quantized (matches TFLite sizes)."""
        return round(self.params_m * (1 if self.quantized else 4), 2)

    @property
    def default_release(self) -> Release:
        return self.releases[0]

    @property
    def url(self) -> str:
        """The default release's tarball URL."""
        return self.releases[0].url

    @property
    def sha256(self) -> str | None:
        """The default release's pinned sha256 (None: trusted on first use)."""
        return self.releases[0].sha256

    @property
    def size_bytes(self) -> int | None:
        """The default release's tarball size, when published."""
        return self.releases[0].size_bytes

    def release(self, name: str | None) -> Release:
        """The release called ``name`` (None: the default one)."""
        if name is None:
            return self.releases[0]
        for rel in self.releases:
            if rel.release == name:
                return rel
        raise UnknownModelError(f"{self.id}@{name}", [f"{self.id}@{r.release}" for r in self.releases])

    def spec(self, release: "Release | str | None" = None) -> str:
        """How to name this model and release on a command line: ``id``, or ``id@release``
        when the release is not the default (so suggested commands fetch the right bytes)."""
        name = release.release if isinstance(release, Release) else release
        return self.id if name in (None, self.releases[0].release) else f"{self.id}@{name}"

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
        """The JSON shape used by `list --json`, `show --json` and `pick --json` (passwords in URLs masked)."""
        from .._util.redact import redact

        return {
            "id": self.id, "family": self.family, "variant": self.variant,
            "width": self.width, "resolution": self.resolution, "quantized": self.quantized,
            "macs_m": self.macs_m, "params_m": self.params_m, "model_size_mb": self.model_size_mb,
            "top1": self.top1, "top5": self.top5,
            "url": redact(self.url), "sha256": self.sha256, "size_bytes": self.size_bytes,
            "releases": [
                {"release": r.release, "url": redact(r.url), "sha256": r.sha256, "size_bytes": r.size_bytes}
                for r in self.releases
            ],
            "latency_ms": dict(self.latency_ms),
            "input_size": list(self.input_size), "input_range": list(self.input_range),
            "input_quantization": dict(self.input_quantization) if self.input_quantization else None,
            "num_classes": self.num_classes,
            "input_node": self.input_node, "output_node": self.output_node,
            "archive_root": self.archive_root, "files": dict(self.files),
            "aliases": list(self.aliases), "layout_evidence": self.layout_evidence,
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
    # The download is given as `releases:` (the canonical form) or, for a model with one
    # tarball, as the url/sha256/size_bytes shorthand; never both.
    "releases": ((list,), False),
    "url": ((str,), False),
    "sha256": ((str, type(None)), False),
    "size_bytes": ((int, type(None)), False),
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
    "layout_evidence": ((str, type(None)), False),
}
_RELEASE_KEYS = {"release", "url", "sha256", "size_bytes", "digest_source"}


class _LineMap(dict):
    """A dict that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict


@lru_cache(maxsize=None)
def _line_loader() -> type:
    """Safe YAML loader that records line numbers and refuses duplicate keys.

    Built on first use: the parsed copy (``zoo.catalog.parsed_copy``) usually spares the YAML,
    and importing yaml costs ~13 ms of every command's start-up."""
    import yaml

    class LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    return LineLoader


def _construct_mapping(loader: Any, node: Any) -> _LineMap:
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


def _type_name(types: tuple) -> str:
    words = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list",
             dict: "mapping", type(None): "null"}
    return " or ".join(dict.fromkeys(words[t] for t in types))


def _check_type(value: Any, types: tuple) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # YAML `true` is not a number
    return isinstance(value, types)


def _unsafe_url(url: str) -> str | None:
    """Why a URL cannot be mirrored as ``<host>/<path>`` (None: it can); see ``zoo._util.safepath``."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme != "file" and not SAFE_URL_PART.fullmatch(parts.netloc.rpartition("@")[2] or "-"):
        return f"host {parts.netloc!r} is not a plain host name"
    if parts.scheme != "file" and not parts.netloc:
        return "the URL has no host"
    return unsafe_url_path(parts.path)


def _unsafe_relative(path: str) -> bool:
    """True for absolute paths, '..' components, backslashes and control characters."""
    return (path.startswith("/") or "\\" in path or any(ord(c) < 32 for c in path)
            or ".." in path.split("/"))


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

    if not is_safe_name(raw.get("id")):
        raise fail(f"field 'id' must be a plain name (letters, digits, '.', '_', '-', '+'; starting with a "
                   f"letter or digit; no '/' or '..'), got {raw.get('id')!r}", "id")

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
    for role, pattern in raw["files"].items():
        if _unsafe_relative(pattern):
            raise fail(f"files.{role} must be a relative path inside the archive, got {pattern!r}", "files")
    if "archive_root" in raw and _unsafe_relative(raw["archive_root"]):
        raise fail(f"archive_root must be a relative path inside the archive, got {raw['archive_root']!r}",
                   "archive_root")

    releases = _releases(raw, fail)

    labels = raw.get("labels")
    if labels is not None and (len(labels) != raw["num_classes"] or not all(isinstance(x, str) for x in labels)):
        raise fail(f"labels must list num_classes ({raw['num_classes']}) class names", "labels")
    return Entry(
        id=raw["id"], family=family, variant=variant, width=float(raw["width"]),
        resolution=raw["resolution"], quantized=raw["quantized"],
        macs_m=raw["macs_m"], params_m=raw["params_m"], top1=raw["top1"], top5=raw["top5"],
        releases=releases,
        latency_ms=MappingProxyType(dict(raw["latency_ms"])),
        input_size=tuple(size), input_range=(float(rng[0]), float(rng[1])),
        input_quantization=MappingProxyType(dict(quant)) if quant else None,
        num_classes=raw["num_classes"], input_node=raw["input_node"], output_node=raw["output_node"],
        archive_root=raw.get("archive_root", "."), files=MappingProxyType(dict(raw["files"])),
        aliases=tuple(raw.get("aliases") or ()), labels=tuple(labels) if labels is not None else None,
        layout_evidence=raw.get("layout_evidence"),
    )


def _releases(raw: _LineMap, fail: Callable[..., CatalogError]) -> tuple[Release, ...]:
    """The entry's tarballs: its `releases:` list, or one release "default" from the shorthand."""
    shorthand = [key for key in ("url", "sha256", "size_bytes") if key in raw]
    if "releases" in raw:
        if shorthand:
            raise fail(f"give the download either as `releases:` or as url/sha256/size_bytes, not both "
                       f"(found {', '.join(shorthand)} beside releases)", shorthand[0])
        listed = raw["releases"]
        if not listed:
            raise fail("releases must list at least one tarball", "releases")
    elif "url" in raw:
        listed = [{"release": "default", **{key: raw[key] for key in shorthand}}]
    else:
        raise fail("missing the download: a `releases:` list, or a `url:` (with optional sha256, size_bytes)")
    key = "releases" if "releases" in raw else "url"
    releases = []
    for rel in listed:
        if not isinstance(rel, dict) or not {"release", "url"} <= set(rel) or set(rel) - _RELEASE_KEYS:
            raise fail("each release needs release and url (optional: sha256, size_bytes, digest_source)", key)
        name, url, sha, size_b = rel["release"], rel["url"], rel.get("sha256"), rel.get("size_bytes")
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)  # `release: 2018` in YAML is a name, not a number
        if not is_safe_name(name):
            raise fail(f"release name must be a plain name (letters, digits, '.', '_', '-', '+'; no '/' or "
                       f"'..'), got {name!r}", key)
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "file://")):
            raise fail(f"release {name!r}: url must be an http(s) or file URL, got {url!r}", key)
        if (why := _unsafe_url(url)) is not None:
            raise fail(f"release {name!r}: url {url!r}: {why}", key)
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise fail(f"release {name!r}: sha256 must be 64 lowercase hex digits", key)
        if size_b is not None and (not isinstance(size_b, int) or isinstance(size_b, bool) or size_b <= 0):
            raise fail(f"release {name!r}: size_bytes must be a positive integer", key)
        releases.append(Release(str(name), url, sha, size_b, rel.get("digest_source")))
    if len({r.release for r in releases}) != len(releases):
        raise fail("two releases share one name", key)
    return tuple(releases)


def parse_catalog(text: str, path: str = "<catalog>", raw_out: list | None = None) -> list[Entry]:
    """Parse and validate catalog YAML text into entries (no lookups, no profile merge).

    ``raw_out``, if given, receives each model's plain mapping (for ``zoo.catalog.parsed_copy``).
    """
    import yaml

    try:
        doc = yaml.load(text, Loader=_line_loader())  # noqa: S506 - a SafeLoader subclass
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
        if raw_out is not None:
            raw_out.append(_plain(raw))
    return entries


def default_catalog_path() -> Path:
    """The catalog shipped inside the package (the repository's catalog.yaml in a checkout)."""
    return Path(__file__).resolve().parent.parent / "catalog.yaml"  # importlib.resources costs ~7 ms at start-up


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

    def list(self, pattern: str = "*") -> list[str]:
        """Ids matching a shell-style ``pattern`` (``"v2_*_quant"``), in natural order.

        Like ``timm.list_models``: case-insensitive fnmatch over canonical ids, sorted so that
        ``v1_0.25_128`` comes before ``v1_0.25_160`` and ``v2_1.0_96`` before ``v2_1.0_128``.
        """
        import fnmatch

        wanted = pattern.strip().lower()
        return sorted((e.id for e in self.entries if fnmatch.fnmatchcase(e.id.lower(), wanted)),
                      key=_natural_key)

    def filter(self, *, family: str | Sequence[str] | None = None, quantized: bool | None = None,
               width: float | Sequence[float] | None = None, resolution: int | Sequence[int] | None = None,
               variant: str | None = None, max_macs: float | None = None, max_params: float | None = None,
               max_size_mb: float | None = None, min_top1: float | None = None,
               max_latency_ms: float | None = None, device: str | None = None) -> list[Entry]:
        """Entries matching every given criterion (budgets in Million MACs / params, MB, %, ms)."""
        from .selection import Filters

        return Filters(family=family, quantized=quantized, width=width, resolution=resolution,
                       variant=variant, max_macs=max_macs, max_params=max_params, max_size_mb=max_size_mb,
                       min_top1=min_top1, max_latency_ms=max_latency_ms, device=device).apply(self.entries)

    def pick(self, *, family: str | Sequence[str] | None = None, quantized: bool | None = None,
             width: float | Sequence[float] | None = None, resolution: int | Sequence[int] | None = None,
             variant: str | None = None, max_macs: float | None = None, max_params: float | None = None,
             max_size_mb: float | None = None, min_top1: float | None = None,
             max_latency_ms: float | None = None, device: str | None = None,
             runners_up: int = 3) -> "PickResult":
        """The most accurate entry within every limit (``.chosen``, ``.reason``, ``.runners_up``).

        Raises ``NothingFitsError`` naming the nearest models when none fits.
        """
        from .selection import Filters, pick

        limits = Filters(family=family, quantized=quantized, width=width, resolution=resolution,
                         variant=variant, max_macs=max_macs, max_params=max_params, max_size_mb=max_size_mb,
                         min_top1=min_top1, max_latency_ms=max_latency_ms, device=device)
        return pick(self.entries, limits, runners_up=runners_up)

    def frontier(self, cost: Cost = "macs", device: str | None = None, *,
                 family: str | Sequence[str] | None = None, quantized: bool | None = None,
                 width: float | Sequence[float] | None = None, resolution: int | Sequence[int] | None = None,
                 variant: str | None = None) -> list[Entry]:
        """Pareto frontier of top-1 against ``cost`` ("macs", "params", "size" or "latency" on ``device``)."""
        from .selection import frontier

        entries = self.filter(family=family, quantized=quantized, width=width, resolution=resolution,
                              variant=variant)
        return frontier(entries, cost, device)

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


def _natural_key(model_id: str) -> tuple:
    """Sort key that compares the numbers inside an id as numbers (96 < 128 < 224)."""
    return tuple((0, float(part), "") if re.fullmatch(r"\d+(\.\d+)?", part) else (1, 0.0, part)
                 for part in re.split(r"(\d+(?:\.\d+)?)", model_id) if part)


def load_catalog(path: str | Path | None = None, *, with_profile: bool = True) -> Catalog:
    """Load and validate a catalog.

    ``path`` defaults to $MOBILENET_ZOO_CATALOG, then the packaged catalog. With
    ``with_profile``, latencies measured by `bench` on this machine are merged in as
    the device `local`.
    """
    source = Path(path) if path is not None else (config.catalog_path() or default_catalog_path())
    catalog = Catalog(tuple(_load_entries(source)), str(source))
    if with_profile:
        from .profile import read_local_latencies

        catalog = catalog.with_latencies(read_local_latencies())
    return catalog


def catalog_or_default(catalog: Catalog | None) -> Catalog:
    """``catalog``, or the configured one when None (the one rule every API function follows)."""
    return catalog if catalog is not None else load_catalog()


def _load_entries(source: Path) -> list[Entry]:
    """Entries from the parsed copy when it matches the file (see ``zoo.catalog.parsed_copy``), else the YAML."""
    from . import parsed_copy as catalog_cache

    try:
        stat = source.stat()
        data = source.read_bytes()
    except FileNotFoundError:
        raise CatalogError("catalog file not found", path=str(source),
                           hint=f"check catalog / ${config.ENV_CATALOG}", params=("catalog",)) from None
    except OSError as exc:
        raise CatalogError(f"cannot read catalog: {exc}", path=str(source)) from None
    key_path = source.resolve()
    cached = catalog_cache.load_models(key_path, stat, data)
    if cached is not None:
        try:
            return _validated(cached, str(source))
        except (CatalogError, TypeError, ValueError, KeyError, AttributeError):
            pass  # a damaged or foreign copy: the YAML decides
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"cannot read catalog: {exc}", path=str(source)) from None
    models: list[dict] = []
    entries = parse_catalog(text, str(source), raw_out=models)
    catalog_cache.store_models(key_path, stat, data, models)
    return entries


def _plain(value: Any) -> Any:
    """A YAML node value without the line bookkeeping (what the JSON copy holds)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _validated(models: list[dict], path: str) -> list[Entry]:
    """The same checks as the YAML path, on a list of plain mappings (no line numbers)."""
    entries: list[Entry] = []
    seen: set[str] = set()
    for model in models:
        raw = _LineMap(model)
        raw.line, raw.key_lines = 0, {}
        entry = _entry_from_mapping(raw, path)
        if entry.id in seen:
            raise CatalogError("duplicate id", path=path, entry_id=entry.id)
        seen.add(entry.id)
        entries.append(entry)
    return entries
