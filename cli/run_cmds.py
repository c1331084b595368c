"""`restore`, `classify`, `bench` and `plot`: the commands that run models.

Importing this module stays light (typer only): numpy, Pillow, LiteRT, TensorFlow and
matplotlib are imported inside the command functions, so `list` never pays for them.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .app import app, settings
from .catalog_cmds import Cost
from .output import print_json, terminal


class Format(str, Enum):
    tflite = "tflite"
    ckpt = "ckpt"
    frozen = "frozen"


class Weights(str, Enum):
    ema = "ema"
    raw = "raw"


FormatOpt = typer.Option(Format.tflite, "--format", "-F",
                         help="Which file of the model to run: tflite (LiteRT), ckpt (Keras) or frozen (TF graph).")
ThreadsOpt = typer.Option(None, "--threads", "-t", min=1,
                          help="CPU threads for the runtime (default: the runtime's own choice).")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _restore(model: str, fmt: Format, **options):
    """A catalog name or a local upstream file -> a restored model (fetching if needed)."""
    from zoo.formats.base import restore_any

    return restore_any(model, fmt.value, catalog=settings.load_catalog(),
                       cache_dir=settings.resolved_cache_dir(), **options)


# ------------------------------------------------------------------ restore
_SUMMARY_LABELS = {
    "id": "model", "format": "format", "source": "file", "input_shape": "input shape",
    "input_range": "input range", "input_dtype": "input dtype", "input_quantization": "input quantization",
    "output_shape": "output shape", "output": "output", "output_dtype": "output dtype",
    "output_quantization": "output quantization", "parameters": "parameters",
    "catalog_params_m": "catalog params (M)", "weights": "weights", "batch": "batch", "threads": "threads",
}


def _fmt_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join("N" if v is None else str(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "-" if value is None else str(value)


@app.command("restore")
def restore_cmd(
    model: str = typer.Argument(..., help="Model id or alias (or a local upstream .tflite / _frozen.pb file)."),
    fmt: Format = FormatOpt,
    weights: Optional[Weights] = typer.Option(
        None, "--weights", help="ckpt only: moving averages (ema) or raw variables (default: upstream's choice)."),
    export: Optional[Path] = typer.Option(
        None, "--export", metavar="DIR", help="Also write the model there (SavedModel for ckpt/frozen, .tflite copy)."),
    as_json: bool = JsonOpt,
) -> None:
    """Restore a model and describe it: shapes, input range, parameters vs the catalog.

    Example: mobilenet-zoo restore v1_0.25_128_quant --format ckpt --weights raw --export ./saved
    """
    from zoo.errors import UsageError

    if weights is not None and fmt is not Format.ckpt:
        raise UsageError("--weights applies to --format ckpt only")
    restored = _restore(model, fmt, weights=weights.value if weights else None)
    info = restored.summary()
    if export is not None:
        info["exported_to"] = str(restored.export(export))
    if as_json:
        print_json(info)
        return
    from rich.table import Table

    table = Table(title=f"{info['id']} ({info['format']})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    params = info.get("parameters")
    for key, value in info.items():
        if key in ("used", "skipped", "notes", "id", "format", "catalog_params_m"):
            continue
        text = "runtime default" if key == "threads" and value is None else _fmt_value(value)
        if key == "parameters" and params and info.get("catalog_params_m"):
            diff = params / 1e6 - info["catalog_params_m"]
            text = f"{params:,} ({params / 1e6:.3f} M; catalog {info['catalog_params_m']} M, diff {diff:+.3f} M)"
        table.add_row(_SUMMARY_LABELS.get(key, key.replace("_", " ")), text)
    if "used" in info:
        table.add_row("variables used", str(len(info["used"])))
    for reason, names in (info.get("skipped") or {}).items():
        table.add_row(f"skipped: {reason}", f"{len(names)}" + (f" (e.g. {names[0]})" if names else ""))
    for note in info.get("notes") or []:
        table.add_row("note", note)
    terminal().print(table)


# ------------------------------------------------------------------ classify
@app.command("classify")
def classify_cmd(
    model: str = typer.Argument(..., help="Model id or alias (or a local upstream .tflite / _frozen.pb file)."),
    images: list[Path] = typer.Argument(..., help="JPEG, PNG or BMP files.", show_default=False),
    fmt: Format = FormatOpt,
    top: int = typer.Option(5, "--top", "-k", min=1, help="How many classes to show per image."),
    crop: float = typer.Option(
        0.875, "--crop", metavar="F",
        help="Central-crop fraction before resizing: 0.875 is TF-slim's eval preprocessing, 1.0 no crop."),
    threads: Optional[int] = ThreadsOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Top-K ImageNet classes for each image.

    Images are cropped to their central 87.5% and resized as TF-slim evaluates
    (the setting behind the catalog's top-1); --crop 1.0 keeps the whole picture.

    Example: mobilenet-zoo classify v1_0.25_128_quant cat.jpg bird.png --top 3
    """
    from zoo.classification import classify
    from zoo.images import check_crop

    check_crop(crop)
    results = classify(model, images, top=top, format=fmt.value, crop=crop, catalog=settings.load_catalog(),
                       cache_dir=settings.resolved_cache_dir(), threads=threads)
    if as_json:
        print_json(results)
        return
    from rich.table import Table

    console = terminal()
    from rich.markup import escape

    for result in results:
        console.print(f"[bold]{escape(result['image'])}[/]", soft_wrap=True)  # a title would wrap long paths
        table = Table()
        table.add_column("#", justify="right")
        table.add_column("label")
        table.add_column("index", justify="right")
        table.add_column("score", justify="right")
        for rank, pred in enumerate(result["predictions"], 1):
            table.add_row(str(rank), pred["label"], str(pred["index"]), f"{pred['score']:.4f}")
        console.print(table)


# ------------------------------------------------------------------ bench
@app.command("bench")
def bench_cmd(
    models: list[str] = typer.Argument(..., help="Model ids or aliases (or local upstream files).",
                                       show_default=False),
    fmt: Format = FormatOpt,
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="CPU threads for the runtime."),
    runs: int = typer.Option(50, "--runs", "-n", min=1, help="Timed runs per model."),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed runs first."),
    as_json: bool = JsonOpt,
) -> None:
    """Time single-image inference here and record it as device `local`.

    The median and 90th percentile of --runs timed calls are saved per machine; then
    `pick --device local` and `plot --x latency --device local` use them. For
    --format ckpt, TensorFlow's thread pools are per process: one --threads per run.

    Example: mobilenet-zoo bench v1_0.25_128_quant v2_0.35_96 --threads 2 --runs 50
    """
    from zoo.benchmark import bench

    bar = None
    tasks: dict[str, int] = {}

    def show_progress(model_id: str, done: int, total: int) -> None:
        if model_id not in tasks:
            tasks[model_id] = bar.add_task(model_id, total=total)
        bar.update(tasks[model_id], completed=done)

    if sys.stderr.isatty():  # a progress bar on a terminal only, never in logs or pipes
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
    try:
        results = bench(models, fmt.value, threads=threads, runs=runs, warmup=warmup,
                        catalog=settings.load_catalog(), cache_dir=settings.resolved_cache_dir(),
                        progress=show_progress if bar is not None else None)
    finally:
        if bar is not None:
            bar.stop()
    if as_json:
        print_json(results)
        return
    from rich.table import Table

    table = Table(title=f"latency on this machine ({runs} runs after {warmup} warm-up)", title_justify="left")
    for name, justify in (("model", "left"), ("format", "left"), ("threads", "right"),
                          ("median ms", "right"), ("p90 ms", "right")):
        table.add_column(name, justify=justify)
    for r in results:
        table.add_row(r["id"], r["format"], str(r["threads"]), f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}")
    console = terminal()
    console.print(table)
    console.print("recorded as device `local` (and local-<format>-<threads>t)", style="dim")


# ------------------------------------------------------------------ plot
@app.command("plot")
def plot_cmd(
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE.png", help="Where to write the PNG."),
    x: Cost = typer.Option(Cost.macs, "--x", help="Cost on the x axis: macs, params, size or latency."),
    device: Optional[str] = typer.Option(None, "--device", "-d",
                                         help="Latency device for --x latency (e.g. pixel1, local)."),
    family: Optional[list[str]] = typer.Option(None, "--family", "-f", help="v1, v2, v3 or edgetpu; repeatable."),
    quantized: Optional[bool] = typer.Option(None, "--quantized/--float", help="Only quantized or only float."),
) -> None:
    """Chart top-1 against a cost with the Pareto frontier marked.

    Example: mobilenet-zoo plot --x latency --device pixel1 --family v2 --family v3 --out frontier.png
    """
    from zoo.errors import UsageError
    from zoo.plot import plot
    from zoo.selection import Filters

    catalog = settings.load_catalog()
    if device and device not in catalog.devices():
        hint = "known devices: " + ", ".join(catalog.devices())
        if device.startswith("local"):
            hint = "nothing measured here yet: run `mobilenet-zoo bench MODEL` first; " + hint
        raise UsageError(f"no model has a latency figure for device {device!r}", hint)
    entries = Filters(family=family or None, quantized=quantized).apply(catalog.entries)
    if not entries:
        raise UsageError("no model matches these filters")
    drawn = plot(entries, x=x.value, device=device, out=out)
    console = terminal()
    console.print(f"wrote {drawn['out']}: {drawn['plotted']} models, frontier of {len(drawn['frontier'])}"
                  + (f"; left out {drawn['left_out_no_top1']} without top-1" if drawn["left_out_no_top1"] else "")
                  + (f", {drawn['left_out_no_cost']} without a figure" if drawn["left_out_no_cost"] else ""))
