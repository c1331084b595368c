"""Choosing models: filters, budget-constrained `pick`, and Pareto frontiers.

Pure functions over catalog entries: no I/O, so the CLI, the API and the tests
(which compare `pick` with a brute-force re-implementation) all share one logic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable, Sequence

from .registry import FAMILIES, Entry
from ..errors import NothingFitsError, UsageError

COSTS = ("macs", "params", "size", "latency")
COST_LABELS = {"macs": "Million MACs", "params": "Million params", "size": "model size (MB)",
               "latency": "latency (ms)"}


def cost_of(entry: Entry, cost: str, device: str | None = None) -> float | None:
    """The entry's value for a cost axis (None when unknown, e.g. no latency for the device)."""
    if cost == "macs":
        return entry.macs_m
    if cost == "params":
        return entry.params_m
    if cost == "size":
        return entry.model_size_mb
    if cost == "latency":
        if not device:
            raise UsageError("a latency cost needs a device", "pass device, e.g. device='pixel1' (see "
                             "`mobilenet-zoo list --devices`)", params=("device",))
        return entry.latency_ms.get(device)
    raise UsageError(f"unknown cost {cost!r}", f"use one of {', '.join(COSTS)}")


def _as_tuple(value) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return (value,)
    return tuple(value) or None


@dataclass(frozen=True)
class Filters:
    """Categorical and budget filters shared by `list`, `pick` and `frontier`.

    Budget fields are upper bounds (``max_*``) or lower bounds (``min_top1``); a
    latency bound needs a ``device`` and excludes models without a figure for it.
    """

    family: str | Sequence[str] | None = None
    quantized: bool | None = None
    width: float | Sequence[float] | None = None
    resolution: int | Sequence[int] | None = None
    variant: str | None = None
    max_macs: float | None = None
    max_params: float | None = None
    max_size_mb: float | None = None
    min_top1: float | None = None
    max_latency_ms: float | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith(("max_", "min_")) and value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                    raise UsageError(f"{f.name} must be a number, got {value!r}", params=(f.name,))
                if value < 0:
                    raise UsageError(f"{f.name} must be >= 0, got {value:g}",
                                     "budgets are limits in the unit their name says (millions, MB, %, ms)",
                                     params=(f.name,))
        if self.min_top1 is not None and self.min_top1 > 100:
            raise UsageError(f"min_top1 is a percentage (0-100), got {self.min_top1:g}", params=("min_top1",))
        for family in _as_tuple(self.family) or ():
            if family not in FAMILIES:
                raise UsageError(f"unknown family {family!r}", f"use one of {', '.join(FAMILIES)}")
        if self.max_latency_ms is not None and not self.device:
            raise UsageError("max_latency_ms needs device",
                             "e.g. device='pixel1', or device='local' once `mobilenet-zoo bench` has measured "
                             "this machine", params=("max_latency_ms", "device"))

    def rejections(self, entry: Entry) -> list[str]:
        """Why ``entry`` fails these filters (empty when it passes), one phrase per limit."""
        out: list[str] = []
        families = _as_tuple(self.family)
        if families and entry.family not in families:
            out.append(f"family {entry.family}")
        if self.quantized is not None and entry.quantized != self.quantized:
            out.append("quantized" if entry.quantized else "float")
        widths = _as_tuple(self.width)
        if widths and not any(math.isclose(entry.width, w) for w in widths):
            out.append(f"width {entry.width:g}")
        resolutions = _as_tuple(self.resolution)
        if resolutions and entry.resolution not in resolutions:
            out.append(f"resolution {entry.resolution}")
        if self.variant and entry.variant != self.variant:
            out.append(f"variant {entry.variant}")
        out.extend(phrase for phrase, _ in self.budget_excess(entry))
        return out

    def budget_excess(self, entry: Entry) -> list[tuple[str, float]]:
        """(phrase, relative excess) for each numeric limit the entry breaks."""
        out: list[tuple[str, float]] = []
        checks = [
            ("max_macs", entry.macs_m, "MACs {v:g}M > max_macs {l:g}"),
            ("max_params", entry.params_m, "params {v:g}M > max_params {l:g}"),
            ("max_size_mb", entry.model_size_mb, "size {v:g} MB > max_size_mb {l:g}"),
        ]
        for name, value, template in checks:
            limit = getattr(self, name)
            if limit is not None and value > limit:
                out.append((template.format(v=value, l=limit), value / limit - 1 if limit else math.inf))
        if self.min_top1 is not None:
            if entry.top1 is None:
                out.append(("no published top-1", math.inf))
            elif entry.top1 < self.min_top1:
                out.append((f"top-1 {entry.top1:g}% < min_top1 {self.min_top1:g}",
                            self.min_top1 / entry.top1 - 1))
        if self.max_latency_ms is not None:
            ms = entry.latency_ms.get(self.device or "")
            if ms is None:
                out.append((f"no latency figure for device {self.device}", math.inf))
            elif ms > self.max_latency_ms:
                out.append((f"{ms:g} ms on {self.device} > max_latency_ms {self.max_latency_ms:g}",
                            ms / self.max_latency_ms - 1 if self.max_latency_ms else math.inf))
        return out

    def categorical_only(self) -> "Filters":
        return Filters(family=self.family, quantized=self.quantized, width=self.width,
                       resolution=self.resolution, variant=self.variant)

    def apply(self, entries: Iterable[Entry]) -> list[Entry]:
        return [e for e in entries if not self.rejections(e)]


# `pick` takes the same limits; the alias reads better at call sites.
Limits = Filters


def rank_key(entry: Entry) -> tuple:
    """Best first: highest top-1, then fewer MACs, then fewer params, then the id."""
    return (-(entry.top1 if entry.top1 is not None else -math.inf), entry.macs_m, entry.params_m, entry.id)


@dataclass(frozen=True)
class PickResult:
    chosen: Entry
    reason: str
    runners_up: tuple[Entry, ...]            # cheaper models on the frontier within the limits
    candidates: int                          # models that met every limit (with a top-1)
    unranked: tuple[Entry, ...] = field(default=())  # met the limits but have no published top-1


def pick(entries: Sequence[Entry], limits: Filters, *, runners_up: int = 3) -> PickResult:
    """The model with the highest top-1 meeting every limit (ties: fewer MACs, params, id).

    Models without a published top-1 are never picked. Raises NothingFitsError naming
    the nearest candidates and the limits that excluded them.
    """
    passing = limits.apply(entries)
    ranked = sorted((e for e in passing if e.top1 is not None), key=rank_key)
    unranked = tuple(e for e in passing if e.top1 is None)
    if not ranked:
        raise _nothing_fits(entries, limits, unranked)
    chosen = ranked[0]
    axis = "latency" if limits.max_latency_ms is not None else "macs"
    front = [e for e in frontier(ranked, axis, limits.device) if e.id != chosen.id]
    cheaper = [e for e in front if (cost_of(e, axis, limits.device) or 0) <= (cost_of(chosen, axis, limits.device) or 0)]
    cheaper.sort(key=lambda e: -(cost_of(e, axis, limits.device) or 0))
    return PickResult(chosen, _reason(chosen, ranked, limits), tuple(cheaper[:runners_up]), len(ranked), unranked)


def _reason(chosen: Entry, ranked: list[Entry], limits: Filters) -> str:
    parts = [f"highest top-1 ({chosen.top1:g}%) of {len(ranked)} model(s) within the limits"]
    ties = [e for e in ranked[1:] if e.top1 == chosen.top1]
    if ties:
        parts.append(f"tie on top-1 with {', '.join(e.id for e in ties[:3])} broken by fewer MACs, params, then id")
    used = _describe_limits(limits)
    if used:
        parts.append("limits: " + ", ".join(used))
    return "; ".join(parts)


def _describe_limits(limits: Filters) -> list[str]:
    out = []
    for name, label in (("max_macs", "MACs <= {}M"), ("max_params", "params <= {}M"),
                        ("max_size_mb", "size <= {} MB"), ("min_top1", "top-1 >= {}%")):
        value = getattr(limits, name)
        if value is not None:
            out.append(label.format(f"{value:g}"))
    if limits.max_latency_ms is not None:
        out.append(f"latency <= {limits.max_latency_ms:g} ms on {limits.device}")
    for name in ("family", "quantized", "width", "resolution", "variant"):
        value = getattr(limits, name)
        if value is not None:
            out.append(f"{name}={value if not isinstance(value, (list, tuple)) else ','.join(map(str, value))}")
    return out


_CATEGORICAL = ("family", "quantized", "width", "resolution", "variant")
_BUDGETS = ("max_macs", "max_params", "max_size_mb", "min_top1", "max_latency_ms")


def _nothing_fits(entries: Sequence[Entry], limits: Filters, unranked: tuple[Entry, ...]) -> NothingFitsError:
    categorical = limits.categorical_only()
    pool = categorical.apply(entries)
    if not pool:
        return NothingFitsError("no model matches " + ", ".join(_describe_limits(categorical)),
                                "relax family / quantized / width / resolution", params=_CATEGORICAL)
    if unranked:
        names = ", ".join(e.id for e in unranked[:5])
        return NothingFitsError(
            f"only models without a published top-1 fit the limits ({names}); `pick` never chooses those",
            "use `mobilenet-zoo list` with the same limits to see them, or relax the limits")
    scored = []
    for entry in pool:
        excess = limits.budget_excess(entry)
        if entry.top1 is None:
            continue
        scored.append((sum(x for _, x in excess), rank_key(entry), entry, excess))
    scored.sort(key=lambda t: (t[0], t[1]))
    lines = [f"{e.id} ({'; '.join(p for p, _ in ex)})" for _, _, e, ex in scored[:3]]
    return NothingFitsError("no model fits every limit; nearest: " + ", ".join(lines),
                            "relax the limit named above", params=_BUDGETS)


def frontier(entries: Iterable[Entry], cost: str = "macs", device: str | None = None) -> list[Entry]:
    """Models no other model beats on both top-1 and the cost, cheapest first.

    Entries without a top-1 or without a figure for the cost (latency on `device`) are left out.
    """
    if cost not in COSTS:
        raise UsageError(f"unknown cost {cost!r}", f"use one of {', '.join(COSTS)}")
    points = []
    for entry in entries:
        value = cost_of(entry, cost, device)
        if value is not None and entry.top1 is not None:
            points.append((value, -entry.top1, entry.id, entry))
    points.sort(key=lambda p: p[:3])
    best = -math.inf
    out = []
    for value, neg_top1, _, entry in points:
        if -neg_top1 > best:
            out.append(entry)
            best = -neg_top1
    return out


def sort_entries(entries: Iterable[Entry], key: str, device: str | None = None) -> list[Entry]:
    """Sort for `list --sort`; unknown values (no top-1, no latency) go last."""
    getters: dict[str, Callable[[Entry], object]] = {
        "id": lambda e: e.id, "family": lambda e: (e.family, e.id), "width": lambda e: e.width,
        "resolution": lambda e: e.resolution, "macs": lambda e: e.macs_m, "params": lambda e: e.params_m,
        "size": lambda e: e.model_size_mb,
        "top1": lambda e: -(e.top1 if e.top1 is not None else -math.inf),
        "top5": lambda e: -(e.top5 if e.top5 is not None else -math.inf),
        "latency": lambda e: e.latency_ms.get(device or "", math.inf),
    }
    if key not in getters:
        raise UsageError(f"unknown sort key {key!r}", f"use one of {', '.join(getters)}")
    if key == "latency" and not device:
        raise UsageError("sort='latency' needs device", params=("sort", "device"))
    getter = getters[key]
    return sorted(entries, key=lambda e: (getter(e), e.id))
