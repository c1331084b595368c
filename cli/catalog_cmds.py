"""`list`, `show`, `pick` and `frontier`: the light commands.

They must start fast: only typer, rich, yaml and the catalog are imported here
(a test asserts that tensorflow, numpy and requests are not).
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Optional

import typer

from zoo import layout
from zoo.catalog import Entry
from zoo.selection import COST_LABELS, Filters, frontier as compute_frontier, pick as pick_model, sort_entries

from .app import app, settings
from .output import print_json, terminal


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class Cost(str, Enum):
    macs = "macs"
    params = "params"
    size = "size"
    latency = "latency"


# ------------------------------------------------------------------ shared options
FamilyOpt = typer.Option(None, "--family", "-f", help="v1, v2, v3 or edgetpu; repeat for several.")
QuantOpt = typer.Option(None, "--quantized/--float", help="Only quantized (uint8) or only float models.")
WidthOpt = typer.Option(None, "--width", help="Width multiplier, e.g. 0.5; repeat for several.")
ResOpt = typer.Option(None, "--resolution", "-r", help="Input resolution, e.g. 224; repeat for several.")
MaxMacsOpt = typer.Option(None, "--max-macs", metavar="M", help="At most M million multiply-accumulates.")
MaxParamsOpt = typer.Option(None, "--max-params", metavar="M", help="At most M million parameters.")
MaxSizeOpt = typer.Option(None, "--max-size-mb", metavar="MB",
                          help="At most MB megabytes (params x 4 bytes float, x 1 quantized).")
MinTop1Opt = typer.Option(None, "--min-top1", metavar="PCT", help="At least PCT % ImageNet top-1.")
MaxLatOpt = typer.Option(None, "--max-latency-ms", metavar="MS", help="At most MS milliseconds on --device.")
DeviceOpt = typer.Option(None, "--device", "-d",
                         help="Device for latency figures: pixel1, pixel2, pixel3, pixel3-cpu4, pixel3-gpu, "
                              "pixel3-nnapi, pixel4, pixel4-edgetpu, or local (measured by `bench`).")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _filters(family, quantized, width, resolution, max_macs=None, max_params=None, max_size_mb=None,
             min_top1=None, max_latency_ms=None, device=None) -> Filters:
    return Filters(family=family or None, quantized=quantized, width=width or None,
                   resolution=resolution or None, max_macs=max_macs, max_params=max_params,
                   max_size_mb=max_size_mb, min_top1=min_top1, max_latency_ms=max_latency_ms, device=device)


def _check_device(catalog, device: Optional[str]) -> None:
    if device and device not in catalog.devices():
        from zoo.errors import UsageError

        hint = "known devices: " + ", ".join(catalog.devices())
        if device.startswith("local"):
            hint = "no measurement on this machine yet: run `mobilenet-zoo bench MODEL` first; " + hint
        raise UsageError(f"no model has a latency figure for device {device!r}", hint)


def _fmt(value, spec: str = "g", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _entries_table(entries: list[Entry], title: str | None = None, device: str | None = None,
                   cached: set[str] | None = None):
    from rich.table import Table

    headers = ["id", "family", "width", "res", "quant", "MACs M", "params M", "MB", "top1", "top5"]
    rows = [[e.id, e.family, f"{e.width:g}", str(e.resolution), "yes" if e.quantized else "", _fmt(e.macs_m),
             _fmt(e.params_m), _fmt(e.model_size_mb), _fmt(e.top1), _fmt(e.top5)] for e in entries]
    if device:
        headers.append(f"{device} ms")
        for row, e in zip(rows, entries):
            row.append(_fmt(e.latency_ms.get(device)))
    if cached is not None:
        headers.append("cached")
        for row, e in zip(rows, entries):
            row.append("yes" if e.id in cached else "")
    table = Table(title=title, header_style="bold")
    for i, name in enumerate(headers):
        # Fixed widths spare rich from measuring every cell (a third of `list`'s rendering time).
        width = max(len(name), *(len(r[i]) for r in rows)) if rows else len(name)
        table.add_column(name, justify="left" if i < 2 else ("center" if name in ("quant", "cached") else "right"),
                         no_wrap=True, width=width)
    for row in rows:
        table.add_row(*row)
    return table


def _cached_ids(entries: list[Entry]) -> set[str]:
    cache = settings.resolved_cache_dir()
    if not cache.is_dir():
        return set()
    return {e.id for e in entries if layout.cached_releases(cache, e)}


@app.command("list")
def list_models(
    family: Optional[list[str]] = FamilyOpt,
    quantized: Optional[bool] = QuantOpt,
    width: Optional[list[float]] = WidthOpt,
    resolution: Optional[list[int]] = ResOpt,
    max_macs: Optional[float] = MaxMacsOpt,
    max_params: Optional[float] = MaxParamsOpt,
    max_size_mb: Optional[float] = MaxSizeOpt,
    min_top1: Optional[float] = MinTop1Opt,
    max_latency_ms: Optional[float] = MaxLatOpt,
    device: Optional[str] = DeviceOpt,
    sort: str = typer.Option("id", "--sort", "-s",
                             help="id, family, width, resolution, macs, params, size, top1, top5, latency."),
    json_out: bool = JsonOpt,
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, json or csv."),
    devices: bool = typer.Option(False, "--devices", help="List the devices that have latency figures."),
) -> None:
    """List models, filtered and sorted.

    Example: mobilenet-zoo list --family v2 --quantized --max-macs 100 --sort top1
    """
    catalog = settings.load_catalog()
    if devices:
        for name in catalog.devices():
            count = sum(1 for e in catalog if name in e.latency_ms)
            print(f"{name}\t{count} models")
        return
    _check_device(catalog, device)
    filters = _filters(family, quantized, width, resolution, max_macs, max_params, max_size_mb, min_top1,
                       max_latency_ms, device)
    entries = sort_entries(filters.apply(catalog), sort, device)
    if json_out or output is OutputFormat.json:
        cached = _cached_ids(entries)
        print_json([{**e.to_dict(), "cached": e.id in cached} for e in entries])
    elif output is OutputFormat.csv:
        import csv

        writer = csv.writer(sys.stdout)
        header = ["id", "family", "variant", "width", "resolution", "quantized", "macs_m", "params_m",
                  "model_size_mb", "top1", "top5", "url", "sha256", "size_bytes"]
        writer.writerow(header + ([f"latency_ms_{device}"] if device else []))
        for e in entries:
            d = e.to_dict()
            writer.writerow(["" if d[k] is None else d[k] for k in header]
                            + ([_fmt(e.latency_ms.get(device), "g").replace("-", "")] if device else []))
    else:
        console = terminal()
        if not entries:
            console.print("no model matches these filters", style="yellow")
            raise typer.Exit(1)
        console.print(_entries_table(entries, f"{len(entries)} of {len(catalog)} models", device,
                                     _cached_ids(entries)))


@app.command("show")
def show(
    model: str = typer.Argument(..., help="Model id or any accepted name (1.0_224, mobilenet_v2_1.4_224, ...)."),
    json_out: bool = JsonOpt,
) -> None:
    """Everything about one model: figures, releases, latencies, files, names, preprocessing.

    Example: mobilenet-zoo show 1.0_224
    """
    catalog = settings.load_catalog()
    entry = catalog.get(model)
    cached = set()
    cache = settings.resolved_cache_dir()
    if cache.is_dir():
        cached = set(layout.cached_releases(cache, entry))
    data = {**entry.to_dict(), "accepted_names": accepted_names(entry), "preprocessing": entry.preprocessing,
            "cached_releases": sorted(cached)}
    if json_out:
        print_json(data)
        return
    from rich.table import Table

    console = terminal()
    title = f"[bold]{entry.id}[/]  MobileNet {entry.family}" + (f" {entry.variant}" if entry.variant else "") \
            + f", width {entry.width:g}, {entry.resolution}x{entry.resolution}" \
            + (", quantized" if entry.quantized else ", float")
    console.print(title)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("MACs", f"{entry.macs_m:g} M")
    facts.add_row("parameters", f"{entry.params_m:g} M")
    facts.add_row("model size", f"{entry.model_size_mb:g} MB (derived: {1 if entry.quantized else 4} byte(s) per parameter)")
    facts.add_row("top-1 / top-5", f"{_fmt(entry.top1, 'g', '%')} / {_fmt(entry.top5, 'g', '%')}"
                  + ("" if entry.top1 is not None else "  (unpublished: `pick` never chooses it)"))
    facts.add_row("input", f"{entry.input_node}: {list(entry.input_size)}, float in "
                  f"[{entry.input_range[0]:g}, {entry.input_range[1]:g}]"
                  + (f"; TFLite uint8 scale {entry.input_quantization['scale']:g} zero point "
                     f"{entry.input_quantization['zero_point']:g}" if entry.input_quantization else ""))
    facts.add_row("output", f"{entry.output_node}: {entry.num_classes} classes (index 0 = background)")
    prep = entry.preprocessing
    facts.add_row("preprocessing", f"RGB, central crop {prep['central_crop']:g}, bilinear resize to "
                  f"{prep['resize'][0]}x{prep['resize'][1]}, {prep['scale']}"
                  + (f"; TFLite uint8 {prep['tflite_uint8_input']}" if "tflite_uint8_input" in prep else ""))
    facts.add_row("names", ", ".join(accepted_names(entry)))
    facts.add_row("cached", ", ".join(sorted(cached)) or "no")
    console.print(facts)

    releases = Table(title="releases (first is the default)", header_style="bold", title_justify="left")
    for col in ("release", "url", "sha256", "size"):
        releases.add_column(col, overflow="fold")
    for rel in entry.releases:
        releases.add_row(rel.release, rel.url, rel.sha256 or "[yellow]none published (trust on first use)[/]",
                         f"{rel.size_bytes:,}" if rel.size_bytes else "-")
    console.print(releases)
    if entry.latency_ms:
        lat = Table(title="latency", header_style="bold", title_justify="left")
        lat.add_column("device")
        lat.add_column("ms", justify="right")
        for device, ms in entry.latency_ms.items():
            lat.add_row(device, f"{ms:g}")
        console.print(lat)
    files = Table(title=f"files (inside the archive, root {entry.archive_root})", header_style="bold",
                  title_justify="left")
    files.add_column("role")
    files.add_column("path")
    for role, path in entry.files.items():
        files.add_row(role, path)
    console.print(files)


def accepted_names(entry: Entry) -> list[str]:
    """Human spellings that resolve to the entry (the resolver also folds case and 0.50 == 0.5)."""
    from zoo.names import url_stem

    out = [entry.id]
    if entry.family in ("v1", "v2"):
        out.append(f"mobilenet_{entry.id}")
    if entry.family == "v1":
        out.append(entry.id[len("v1_"):])
    out.extend(url_stem(r.url) for r in entry.releases)
    out.extend(entry.aliases)
    out.extend(f"{entry.id}@{r.release}" for r in entry.releases[1:])
    return list(dict.fromkeys(out))


def _pick_table(entries: list[Entry], title: str, device: Optional[str]):
    return _entries_table(entries, title, device)


@app.command("pick")
def pick(
    max_macs: Optional[float] = MaxMacsOpt,
    max_params: Optional[float] = MaxParamsOpt,
    max_size_mb: Optional[float] = MaxSizeOpt,
    min_top1: Optional[float] = MinTop1Opt,
    max_latency_ms: Optional[float] = MaxLatOpt,
    device: Optional[str] = DeviceOpt,
    family: Optional[list[str]] = FamilyOpt,
    quantized: Optional[bool] = QuantOpt,
    width: Optional[list[float]] = WidthOpt,
    resolution: Optional[list[int]] = ResOpt,
    show_frontier: bool = typer.Option(False, "--frontier", help="Print the Pareto frontier instead."),
    fetch: bool = typer.Option(False, "--fetch", help="Also fetch the chosen model into the cache."),
    json_out: bool = typer.Option(False, "--json", help="Print the chosen entry as JSON."),
) -> None:
    """The most accurate model within every budget (ties: fewer MACs, params, then id).

    Example: mobilenet-zoo pick --max-latency-ms 10 --device pixel3-cpu4 --quantized --fetch
    """
    catalog = settings.load_catalog()
    _check_device(catalog, device)
    filters = _filters(family, quantized, width, resolution, max_macs, max_params, max_size_mb, min_top1,
                       max_latency_ms, device)
    if show_frontier:
        cost = Cost.latency if max_latency_ms is not None or device else Cost.macs
        _print_frontier(filters.apply(catalog), cost, device, json_out)
        return
    result = pick_model(list(catalog), filters)
    if json_out:
        data = result.chosen.to_dict()
        if fetch:
            data["path"] = str(_fetch_chosen(result.chosen, quiet=True).path)
        print_json(data)
        return
    console = terminal()
    console.print(f"[bold green]{result.chosen.id}[/]")
    console.print(f"why: {result.reason}")
    console.print(_entries_table([result.chosen], None, device))
    if result.runners_up:
        console.print(_pick_table(list(result.runners_up),
                                  "runners-up: cheaper models on the accuracy/cost frontier", device))
    if result.unranked:
        console.print(f"[yellow]note:[/] {len(result.unranked)} model(s) also fit but have no published top-1 "
                      f"and are never picked: {', '.join(e.id for e in result.unranked[:6])}"
                      + (" ..." if len(result.unranked) > 6 else ""))
    if fetch:
        print(_fetch_chosen(result.chosen, quiet=False).path)
    else:
        console.print(f"fetch it: mobilenet-zoo fetch {result.chosen.id}  (or add --fetch)")


def _fetch_chosen(entry: Entry, quiet: bool):
    """Hand over to the fetch machinery (imported only now: picking stays light)."""
    from .fetch_cmds import fetch_one

    return fetch_one(entry, quiet)


def _print_frontier(entries: list[Entry], cost: Cost, device: Optional[str], json_out: bool) -> None:
    front = compute_frontier(entries, cost.value, device)
    if json_out:
        print_json([e.to_dict() for e in front])
        return
    label = COST_LABELS[cost.value] + (f" on {device}" if cost is Cost.latency else "")
    terminal().print(_entries_table(front, f"Pareto frontier: top-1 against {label} ({len(front)} models)",
                                    device if cost is Cost.latency else None))


@app.command("frontier")
def frontier(
    cost: Cost = typer.Option(Cost.macs, "--cost", "-c", help="macs, params, size or latency (needs --device)."),
    device: Optional[str] = DeviceOpt,
    family: Optional[list[str]] = FamilyOpt,
    quantized: Optional[bool] = QuantOpt,
    width: Optional[list[float]] = WidthOpt,
    resolution: Optional[list[int]] = ResOpt,
    json_out: bool = JsonOpt,
) -> None:
    """The models no other model beats on both top-1 and the chosen cost.

    Example: mobilenet-zoo frontier --cost latency --device pixel1
    """
    catalog = settings.load_catalog()
    _check_device(catalog, device)
    if cost is Cost.latency and not device:
        from zoo.errors import UsageError

        raise UsageError("--cost latency needs --device", "known devices: " + ", ".join(catalog.devices()))
    entries = _filters(family, quantized, width, resolution).apply(catalog)
    _print_frontier(entries, cost, device, json_out)
