"""Top-1 accuracy against a cost (MACs, parameters, size or latency), frontier included.

One marker shape and colour per family, filled for float and hollow for quantized
models; the Pareto frontier (``zoo.catalog.selection.frontier``) is drawn as a step line and
its models are named. Uses matplotlib's Agg canvas directly, so it never touches the
user's interactive backend and runs on headless machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .registry import Entry
from .selection import COSTS
from ..errors import MissingDependencyError, UsageError

_LABELS = {"macs": "Million multiply-adds (MACs)", "params": "Million parameters",
           "size": "Model size (MB, 4 B/param float, 1 B/param quantized)", "latency": "Latency (ms)"}
_SHORT = {"macs": "MACs", "params": "parameters", "size": "model size", "latency": "latency"}
_STYLE = {  # family -> (marker, colour)
    "v1": ("o", "#1f77b4"), "v2": ("s", "#d62728"), "v3": ("^", "#2ca02c"), "edgetpu": ("D", "#9467bd"),
}


def cost_value(entry: Entry, cost: str, device: str | None) -> float | None:
    """The entry's cost (None when unknown), as `pick` and `frontier` see it."""
    from .selection import cost_of

    return cost_of(entry, cost, device)


def pareto_frontier(entries: list[Entry], cost: str, device: str | None) -> list[Entry]:
    """Models nothing beats on both top-1 and cost, cheapest first (the same frontier `frontier` prints)."""
    from .selection import frontier

    return frontier(entries, cost, device)


def _frontier_labels(best: list[Entry], fx: list[float], fy: list[float], all_x: list[float],
                     all_y: list[float], log_x: bool):
    """One label per frontier point, written up-left of it; a label that would overlap the
    previous one (close in top-1, and its text reaching back over the previous point) joins it."""
    import math

    def frac(v: float) -> float:  # position along the x axis, 0..1
        lo, hi = min(all_x), max(all_x)
        if log_x:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(v)
        return (v - lo) / ((hi - lo) or 1.0)

    line = 0.03 * ((max(all_y) - min(all_y)) or 1.0)  # one 7 pt text line in top-1 units
    groups: list[list[int]] = []
    for i in range(len(best)):
        if groups:
            last = groups[-1][-1]
            width = len(best[i].id) * 0.0068  # 7 pt characters over a ~620 pt wide axis
            if fy[i] - fy[last] < line * len(groups[-1]) and frac(fx[i]) - frac(fx[last]) < width:
                groups[-1].append(i)
                continue
        groups.append([i])
    return [(fx[g[-1]], fy[g[-1]], "\n".join(best[i].id for i in reversed(g))) for g in groups]


def _count(n: int) -> str:
    return f"{n} model" + ("" if n == 1 else "s")


def _make_room_for(fig, ax, notes, pad_px: float = 6.0) -> bool:
    """Widen the x range on the left until every frontier label lies inside the axes.

    Labels sit up-left of their point, so the cheapest model's label reaches left of it;
    with few points (or one) it would be cut by the axes edge. Measured on the real
    renderer, in the axis's own scale (linear or log), a few rounds at most. True when
    every label (and the legend, which sits outside the axes) ends up inside the figure.
    """
    for _ in range(5):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = ax.get_window_extent(renderer)
        overflow = max([box.x0 - n.get_window_extent(renderer).x0 for n in notes] + [0.0])
        if overflow <= 0:
            figure = fig.bbox
            legend = ax.get_legend().get_window_extent(renderer)
            return all(figure.x0 <= b.x0 and b.x1 <= figure.x1 and b.y1 <= figure.y1
                       for b in [legend] + [n.get_window_extent(renderer) for n in notes])
        scale = ax.xaxis.get_transform()
        lo, hi = scale.transform(ax.get_xlim())
        step = (hi - lo) * (overflow + pad_px) / max(box.width - overflow - pad_px, 1.0)
        ax.set_xlim(scale.inverted().transform([lo - step, hi]))
        fig.tight_layout()
    return False


def plot(entries: Iterable[Entry], x: str = "macs", device: str | None = None,
         out: Path = Path("mobilenets.png"), title: str | None = None) -> dict:
    """Draw the chart into ``out`` (PNG) and return what was drawn and left out."""
    if x not in COSTS:
        raise UsageError(f"unknown x {x!r}", hint=f"use one of: {', '.join(COSTS)}", params=("x",))
    if x == "latency" and not device:
        raise UsageError("x='latency' needs device", hint="see `mobilenet-zoo list --devices`; "
                         "`mobilenet-zoo bench` adds the device `local`", params=("x", "device"))
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot") from None

    entries = list(entries)
    no_top1 = [e for e in entries if e.top1 is None]
    no_cost = [e for e in entries if e.top1 is not None and cost_value(e, x, device) is None]
    shown = [e for e in entries if e.top1 is not None and cost_value(e, x, device) is not None]
    if not shown:
        what = f"a {device} latency" if x == "latency" else "a top-1 figure"
        raise UsageError(f"no model to plot: none of the {len(entries)} selected has {what}",
                         hint="widen the filters or pick another device")
    best = pareto_frontier(shown, x, device)

    fig = Figure(figsize=(10, 6.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for family, (marker, colour) in _STYLE.items():
        for quantized in (False, True):
            group = [e for e in shown if e.family == family and e.quantized == quantized]
            if not group:
                continue
            ax.scatter([cost_value(e, x, device) for e in group], [e.top1 for e in group],
                       marker=marker, s=36, linewidths=1.2, edgecolors=colour,
                       facecolors="none" if quantized else colour, alpha=0.85, zorder=3)
    fx = [cost_value(e, x, device) for e in best]
    fy = [e.top1 for e in best]
    ax.step(fx, fy, where="post", color="black", linewidth=1, alpha=0.6, zorder=2)
    all_y = [e.top1 for e in shown]
    values = [cost_value(e, x, device) for e in shown]
    log_x = min(values) > 0 and max(values) / min(values) > 20
    labels = _frontier_labels(best, fx, fy, values, all_y, log_x)
    span = (max(all_y) - min(all_y)) or 1.0
    ax.set_ylim(min(all_y) - 0.04 * span, max(all_y) + span * (0.03 + 0.03 * (labels[-1][2].count("\n") + 1)))
    notes = []
    for x_at, y_at, text in labels:
        # Upper-left of a frontier point is always empty: nothing is cheaper and better.
        notes.append(ax.annotate(text, (x_at, y_at), textcoords="offset points", xytext=(-4, 3),
                                 ha="right", va="bottom", fontsize=7, zorder=4))

    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(_LABELS[x] + (f" on {device}" if x == "latency" else ""))
    ax.set_ylabel("ImageNet top-1 (%)")
    ax.grid(True, which="major", alpha=0.3)

    handles = [Line2D([], [], marker=m, linestyle="", color=c, label=f"MobileNet {f}")
               for f, (m, c) in _STYLE.items() if any(e.family == f for e in shown)]
    handles += [Line2D([], [], marker="o", linestyle="", color="grey", label="float"),
                Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="grey", label="quantized"),
                Line2D([], [], color="black", alpha=0.6, label=f"Pareto frontier ({_count(len(best))})")]
    # Outside the axes, so it can never cover a point.
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)

    left_out = []
    if no_top1:
        left_out.append(f"{len(no_top1)} without top-1")
    if no_cost:
        left_out.append(f"{len(no_cost)} without a {device} latency" if x == "latency"
                        else f"{len(no_cost)} without a {x} figure")
    heading = title or f"MobileNets: top-1 vs {_SHORT[x]}" + (f" ({device})" if x == "latency" else "")
    heading += f" - {_count(len(shown))}" + (f"; left out: {', '.join(left_out)}" if left_out else "")
    ax.set_title(heading, fontsize=10)
    fig.tight_layout()
    labels_fit = _make_room_for(fig, ax, notes)

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"out must end in .png, got {out}", params=("out",))
    from .._util.atomic import atomic_file

    with atomic_file(out) as fh:  # a picture is shared like any file: the umask's mode, not 0600
        fig.savefig(fh, format="png")
    return {"out": str(out), "x": x, "device": device, "plotted": len(shown),
            "frontier": [e.id for e in best], "left_out_no_top1": len(no_top1),
            "left_out_no_cost": len(no_cost), "labels_fit": labels_fit}
