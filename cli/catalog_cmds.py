"""`list`, `show`, `pick` and `frontier`: the light commands.

They must start fast: only typer, rich, yaml and the catalog are imported here
(a test asserts that tensorflow, numpy and requests are not).
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from zoo.fetching import layout
from zoo._util.units import format_bytes, format_count, format_ms, format_percent, format_width
from zoo.catalog import Entry
from zoo._util.redact import redact
from zoo.catalog.selection import (COST_LABELS, Filters, frontier as compute_frontier, pick as pick_model,
                                   sort_entries)

from .common import (Cost, PickRuntime, app, device_for_runtime, pick_runtime_option, exit_no_match, cache_dir, check_device, device_option, family_option, json_option,
                     load_catalog, quantized_option)
from .completion import complete_model
from .output import Column, print_json, print_table, style

# ------------------------------------------------------------------ options of the filtering commands
WidthOpt = typer.Option(None, "--width", help="Width multiplier, e.g. 0.5; repeat for several.")
ResOpt = typer.Option(None, "--resolution", "-r", help="Input resolution, e.g. 224; repeat for several.")
MaxMacsOpt = typer.Option(None, "--max-macs", metavar="M", help="At most M million multiply-accumulates.")
MaxParamsOpt = typer.Option(None, "--max-params", metavar="M", help="At most M million parameters.")
MaxSizeOpt = typer.Option(None, "--max-size-mb", metavar="MB",
                          help="At most MB megabytes (params x 4 bytes float, x 1 quantized).")
MinTop1Opt = typer.Option(None, "--min-top1", metavar="PCT", help="At least PCT % ImageNet top-1.")
MaxLatOpt = typer.Option(None, "--max-latency-ms", metavar="MS", help="At most MS milliseconds on --device.")


def _filters(family, quantized, width, resolution, max_macs=None, max_params=None, max_size_mb=None,
             min_top1=None, max_latency_ms=None, device=None) -> Filters:
    return Filters(family=family or None, quantized=quantized, width=width or None,
                   resolution=resolution or None, max_macs=max_macs, max_params=max_params,
                   max_size_mb=max_size_mb, min_top1=min_top1, max_latency_ms=max_latency_ms, device=device)


def entry_columns(entries: list[Entry], device: str | None = None, cached: set[str] | None = None):
    """Columns and rows for a list of models; ``keep`` ranks what survives a narrow terminal."""
    columns = [Column("id"), Column("family", keep=1), Column("width", "right", keep=2),
               Column("res", "right", keep=3), Column("quant", "center", keep=6), Column("MACs M", "right", keep=9),
               Column("params M", "right", keep=5), Column("MB", "right", keep=7), Column("top1", "right", keep=11),
               Column("top5", "right", keep=4)]
    rows = [[e.id, e.family, format_width(e.width), str(e.resolution), "yes" if e.quantized else "",
             format_count(e.macs_m), f"{e.params_m:.2f}", f"{e.model_size_mb:.1f}",
             format_percent(e.top1), format_percent(e.top5)] for e in entries]
    if device:
        columns.append(Column(f"{device} ms", "right", keep=10))
        for row, e in zip(rows, entries):
            row.append(format_ms(e.latency_ms.get(device)))
    if cached is not None:
        columns.append(Column("cached", "center", keep=8))
        for row, e in zip(rows, entries):
            row.append("yes" if e.id in cached else "")
    return columns, rows


def print_entries(entries: list[Entry], title: str | None = None, device: str | None = None,
                  cached: set[str] | None = None) -> None:
    print_table(*entry_columns(entries, device, cached), title=title)


def _cached_ids(entries: list[Entry]) -> set[str]:
    cache = cache_dir()
    if not cache.is_dir():
        return set()
    return {e.id for e in entries if layout.cached_releases(cache, e)}


@app.command("list")
def list_models(
    family: Optional[list[str]] = family_option(),
    quantized: Optional[bool] = quantized_option(),
    width: Optional[list[float]] = WidthOpt,
    resolution: Optional[list[int]] = ResOpt,
    max_macs: Optional[float] = MaxMacsOpt,
    max_params: Optional[float] = MaxParamsOpt,
    max_size_mb: Optional[float] = MaxSizeOpt,
    min_top1: Optional[float] = MinTop1Opt,
    max_latency_ms: Optional[float] = MaxLatOpt,
    device: Optional[str] = device_option(),
    sort: str = typer.Option("id", "--sort", "-s",
                             help="id, family, width, resolution, macs, params, size, top1, top5, latency."),
    json_out: bool = json_option(),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (a header row, one row per model)."),
    as_tsv: bool = typer.Option(False, "--tsv", help="Print tab-separated values."),
    old_format: Optional[str] = typer.Option(None, "--format", hidden=True,
                                             help="Replaced by --csv, --tsv and --json (says so)."),
    devices: bool = typer.Option(False, "--devices", help="List the devices that have latency figures."),
) -> None:
    """List models, filtered and sorted. Exits 1 when no model matches, whatever the format.

    Example: mobilenet-zoo list --family v2 --quantized --max-macs 100 --sort top1
    """
    if old_format is not None:  # --format names a model's file format in every other command
        from zoo.errors import UsageError

        raise UsageError("list takes --csv, --tsv or --json for its output format",
                         hint=f"use `mobilenet-zoo list --{old_format.lower()}`"
                         if old_format.lower() in ("csv", "tsv", "json") else "--format is the model file format (tflite, ckpt, frozen) in restore, classify, eval, bench")
    if sum((json_out, as_csv, as_tsv)) > 1:
        from zoo.errors import UsageError

        raise UsageError("--json, --csv and --tsv exclude each other")
    output = "csv" if as_csv else "tsv" if as_tsv else "table"
    catalog = load_catalog()
    if devices:
        for name in catalog.devices():
            count = sum(1 for e in catalog if name in e.latency_ms)
            print(f"{name}\t{count} models")
        return
    check_device(catalog, device)
    filters = _filters(family, quantized, width, resolution, max_macs, max_params, max_size_mb, min_top1,
                       max_latency_ms, device)
    entries = sort_entries(filters.apply(catalog), sort, device)
    if json_out:
        cached = _cached_ids(entries)
        print_json([{**e.to_dict(), "cached": e.id in cached} for e in entries])
    elif output in ("csv", "tsv"):
        import csv

        writer = csv.writer(sys.stdout, dialect="excel-tab" if output == "tsv" else "excel",
                            lineterminator="\n")
        header = ["id", "family", "variant", "width", "resolution", "quantized", "macs_m", "params_m",
                  "model_size_mb", "top1", "top5", "url", "sha256", "size_bytes"]
        writer.writerow(header + ([f"latency_ms_{device}"] if device else []))
        for e in entries:
            d = e.to_dict()
            latency = e.latency_ms.get(device) if device else None
            writer.writerow(["" if d[k] is None else d[k] for k in header]
                            + (["" if latency is None else f"{latency:g}"] if device else []))
    elif entries:
        print_entries(entries, f"{len(entries)} of {len(catalog)} models", device, _cached_ids(entries))
    if not entries:
        exit_no_match()


@app.command("show")
def show(
    model: str = typer.Argument(..., help="Model id or any accepted name (1.0_224, mobilenet_v2_1.4_224, ...); "
                                          "NAME@RELEASE for one release.", autocompletion=complete_model),
    json_out: bool = json_option(),
) -> None:
    """Everything about one model: figures, releases, latencies, files, names, preprocessing.

    URLs and digests are printed whole, one per line (the terminal may wrap them visually,
    but copy and paste gets them intact).

    Example: mobilenet-zoo show 1.0_224
    """
    catalog = load_catalog()
    entry, chosen = catalog.resolve(model)  # an unknown @release fails here, as in `fetch`
    cached = set()
    cache = cache_dir()
    if cache.is_dir():
        cached = set(layout.cached_releases(cache, entry))
    data = {**entry.to_dict(), "accepted_names": accepted_names(entry), "preprocessing": entry.preprocessing,
            "cached_releases": sorted(cached)}
    if "@" in model:
        data["release"] = chosen.release
    if json_out:
        print_json(data)
        return
    title = f"{entry.id}  MobileNet {entry.family}" + (f" {entry.variant}" if entry.variant else "") \
        + f", width {format_width(entry.width)}, {entry.resolution}x{entry.resolution}" \
        + (", quantized" if entry.quantized else ", float")
    prep = entry.preprocessing
    facts = [
        ("MACs", f"{format_count(entry.macs_m)} M"),
        ("parameters", f"{format_count(entry.params_m)} M"),
        ("model size", f"{format_count(entry.model_size_mb)} MB (derived: {1 if entry.quantized else 4} "
                       f"byte{'' if entry.quantized else 's'} per parameter)"),
        ("top-1 / top-5", f"{format_percent(entry.top1)}% / {format_percent(entry.top5)}%"
         + ("" if entry.top1 is not None else "  (unpublished: `pick` never chooses it)")),
        ("input", f"{entry.input_node}: {list(entry.input_size)}, float in "
                  f"[{entry.input_range[0]:g}, {entry.input_range[1]:g}]"
                  + (f"; TFLite uint8 scale {entry.input_quantization['scale']:g} zero point "
                     f"{entry.input_quantization['zero_point']:g}" if entry.input_quantization else "")),
        ("output", f"{entry.output_node}: {entry.num_classes} classes (index 0 = background)"),
        ("preprocessing", f"RGB, central crop {prep['central_crop']:g}, bilinear resize to "
                          f"{prep['resize'][0]}x{prep['resize'][1]}, {prep['scale']}"
                          + (f"; TFLite uint8 {prep['tflite_uint8_input']}" if "tflite_uint8_input" in prep else "")),
        ("names", ", ".join(accepted_names(entry))),
        ("cached", ", ".join(sorted(cached)) or "no"),
    ]
    sections: list[tuple[str, list[tuple[str, str]]]] = [("", facts)]
    for i, rel in enumerate(entry.releases):
        marks = [m for m, on in (("default", i == 0), ("chosen", "@" in model and rel is chosen),
                                 ("cached", rel.release in cached)) if on]
        sections.append((f"release {rel.release}" + (f" ({', '.join(marks)})" if marks else ""), [
            ("url", redact(rel.url)),
            ("sha256", rel.sha256 or "none published (trusted on first use)"),
            ("size", f"{format_bytes(rel.size_bytes)} ({rel.size_bytes:,} bytes)" if rel.size_bytes else "unknown"),
        ]))
    if entry.latency_ms:
        sections.append(("latency (ms)", [(device, format_ms(ms)) for device, ms in entry.latency_ms.items()]))
    sections.append((f"files inside the archive (root {entry.archive_root})",
                     list(entry.files.items()) + [("layout", entry.layout_evidence or "not stated")]))
    _print_sections(title, sections)


def _print_sections(title: str, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """Label/value lines, one per fact, never hard-wrapped (long values stay copy-pasteable);
    bold labels on a terminal, plain text into a pipe."""
    width = max(len(label) for _, rows in sections for label, _ in rows)
    lines = [style(title, "bold")]
    for heading, rows in sections:
        if heading:
            lines.append("\n" + style(heading, "bold"))
        lines.extend(f"  {style(f'{label:{width}}', 'bold')}  {value}" for label, value in rows)
    sys.stdout.write("\n".join(lines) + "\n")


def accepted_names(entry: Entry) -> list[str]:
    """Human spellings that resolve to the entry (the resolver also folds case and 0.50 == 0.5)."""
    from zoo.catalog.names import url_stem

    out = [entry.id]
    if entry.family in ("v1", "v2"):
        out.append(f"mobilenet_{entry.id}")
    if entry.family == "v1":
        out.append(entry.id[len("v1_"):])
    out.extend(url_stem(r.url) for r in entry.releases)
    out.extend(entry.aliases)
    out.extend(f"{entry.id}@{r.release}" for r in entry.releases[1:])
    return list(dict.fromkeys(out))


@app.command("pick")
def pick(
    max_macs: Optional[float] = MaxMacsOpt,
    max_params: Optional[float] = MaxParamsOpt,
    max_size_mb: Optional[float] = MaxSizeOpt,
    min_top1: Optional[float] = MinTop1Opt,
    max_latency_ms: Optional[float] = MaxLatOpt,
    device: Optional[str] = device_option(),
    runtime: Optional[PickRuntime] = pick_runtime_option(),
    family: Optional[list[str]] = family_option(),
    quantized: Optional[bool] = quantized_option(),
    width: Optional[list[float]] = WidthOpt,
    resolution: Optional[list[int]] = ResOpt,
    show_frontier: bool = typer.Option(False, "--frontier", help="Print the Pareto frontier instead."),
    fetch: bool = typer.Option(False, "--fetch", help="Also fetch the chosen model into the cache."),
    json_out: bool = json_option("Print the chosen entry, the reason, the runners-up and any note as JSON."),
    id_only: bool = typer.Option(False, "--id-only", "-q", help="Print only the chosen model's id "
                                                                 "(with --fetch: only its path)."),
) -> None:
    """The most accurate model within every budget (ties: fewer MACs, params, then id).

    Exits 1 when nothing fits, whatever the output format.

    Example: mobilenet-zoo pick --max-latency-ms 10 --device pixel3-cpu4 --quantized --fetch
    """
    catalog = load_catalog()
    device = device_for_runtime(device, runtime)
    check_device(catalog, device)
    filters = _filters(family, quantized, width, resolution, max_macs, max_params, max_size_mb, min_top1,
                       max_latency_ms, device)
    if show_frontier:
        cost = Cost.latency if max_latency_ms is not None or device else Cost.macs
        _print_frontier(filters.apply(catalog), cost, device, json_out)
        return
    result = pick_model(list(catalog), filters)
    chosen = result.chosen
    note = None
    if result.unranked:
        note = (f"{len(result.unranked)} model(s) also fit but have no published top-1 and are never picked: "
                + ", ".join(e.id for e in result.unranked[:6]) + (" ..." if len(result.unranked) > 6 else ""))
    cache = cache_dir()
    cached = layout.cached_releases(cache, chosen) if cache.is_dir() else []
    if json_out:
        data = {**chosen.to_dict(), "reason": result.reason,
                "runners_up": [e.to_dict() for e in result.runners_up],
                "unranked": [e.id for e in result.unranked], "note": note,
                "cached": chosen.default_release.release in cached}
        if fetch:
            data["path"] = str(_fetch_chosen(chosen, quiet=True).path)
        print_json(data)
        return
    if id_only:
        print(_fetch_chosen(chosen, quiet=True).path if fetch else chosen.id)
        return
    print(style(chosen.id, "bold green"))
    print(f"why: {result.reason}")
    print_entries([chosen], None, device)
    if result.runners_up:
        print("\n" + style("runners-up: cheaper models on the accuracy/cost frontier", "italic"))
        print_entries(list(result.runners_up), None, device)
    if note:
        print(f"{style('note:', 'yellow')} {note}")
    if fetch:
        print(_fetch_chosen(chosen, quiet=False).path)
    elif chosen.default_release.release in cached:
        print(f"cached: {layout.entry_dir(cache, chosen, chosen.default_release)}", file=sys.stderr)
    else:
        print(f"fetch it: mobilenet-zoo fetch {chosen.id}  (or add --fetch)", file=sys.stderr)


def _fetch_chosen(entry: Entry, quiet: bool):
    """Hand over to the fetch machinery (imported only now: picking stays light)."""
    from . import feedback
    from .fetch_cmds import fetch_one

    own = feedback.reporter() is None and not quiet
    if own:
        feedback.setup()  # progress and notes, as for any download (skipped at start-up for speed)
    try:
        return fetch_one(entry, quiet)
    finally:
        if own:
            feedback.close()


def _print_frontier(entries: list[Entry], cost: Cost, device: Optional[str], json_out: bool) -> None:
    front = compute_frontier(entries, cost.value, device)
    if json_out:
        print_json([e.to_dict() for e in front])
        if not front:
            exit_no_match()
        return
    if not front:
        exit_no_match()
    label = COST_LABELS[cost.value] + (f" on {device}" if cost is Cost.latency else "")
    print_entries(front, f"Pareto frontier: top-1 against {label} ({len(front)} models)",
                  device if cost is Cost.latency else None)


@app.command("frontier")
def frontier(
    cost: Cost = typer.Option(Cost.macs, "--cost", "-c", help="macs, params, size or latency (needs --device)."),
    device: Optional[str] = device_option(),
    runtime: Optional[PickRuntime] = pick_runtime_option(),
    family: Optional[list[str]] = family_option(),
    quantized: Optional[bool] = quantized_option(),
    width: Optional[list[float]] = WidthOpt,
    resolution: Optional[list[int]] = ResOpt,
    json_out: bool = json_option(),
) -> None:
    """The models no other model beats on both top-1 and the chosen cost.

    Example: mobilenet-zoo frontier --cost latency --device local --runtime any
    """
    catalog = load_catalog()
    device = device_for_runtime(device, runtime)
    check_device(catalog, device)
    if cost is Cost.latency and not device:
        from zoo.errors import UsageError

        raise UsageError("--cost latency needs --device", "known devices: " + ", ".join(catalog.devices()))
    entries = _filters(family, quantized, width, resolution).apply(catalog)
    _print_frontier(entries, cost, device, json_out)
