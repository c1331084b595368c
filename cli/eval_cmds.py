"""`eval`: top-1/top-5 of a model on labelled images, against the catalog's figures.

Importing this module stays light (typer only); the work is in ``zoo.run.evaluation``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from zoo.data.datasets import SPLITS

from .common import (MODEL_HELP, ModelFormat as Format, app, cache_dir, choices, format_value, json_option, load_catalog,
                     model_format_option, fake_quant_value, no_fake_quant_option, openvino_device_option, precision_option,
                     runtime_option, runtime_options,
                     threads_option, Precision, Runtime)
from .output import print_json, terminal


Split = choices("Split", SPLITS)


@app.command("eval")
def eval_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP),
    data: Path = typer.Option(
        ..., "--data", metavar="PATH", show_default=False,
        help="ILSVRC synset folders (n01440764/*.JPEG), TF-slim TFRecord shards, a CSV/TSV of "
             "path,label rows, or class-name folders for a model with its own classes."),
    fmt: Optional[Format] = model_format_option(),
    compare: Optional[Format] = typer.Option(
        None, "--compare", metavar="FORMAT", show_default=False,
        help="Also run the model's FORMAT file (tflite, frozen or ckpt) on the same images, on its own default "
             "runtime, and show both with how often their top-1 agree: say the ckpt of a _quant model against "
             "its uint8 .tflite."),
    no_fake_quant: bool = no_fake_quant_option(),
    runtime: Optional[Runtime] = runtime_option(),
    precision: Optional[Precision] = precision_option(),
    openvino_device: Optional[str] = openvino_device_option(),
    threads: Optional[int] = threads_option(
        "CPU threads for inference (default: all CPUs). A model on LiteRT, ONNX Runtime or OpenVINO runs as that many one-thread "
        "copies side by side, each on its own images: more images/s than one copy using N threads."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", "-b", min=1, help="Images per runtime call (default: 1 for tflite, 32 for TensorFlow)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="Only the first N images, in the set's sorted order."),
    crop: float = typer.Option(
        0.875, "--crop", metavar="F",
        help="Central-crop fraction before resizing: 0.875 is TF-slim's eval preprocessing, 1.0 no crop."),
    split: Split = typer.Option(Split.validation, "--split", help="Which TFRecord shards to read."),
    skip_errors: bool = typer.Option(False, "--skip-errors",
                                     help="Count unreadable images and go on, instead of stopping at the first."),
    as_json: bool = json_option("Print one JSON object instead of the summary."),
) -> None:
    """Measure top-1/top-5 on labelled images, the way TF-slim's eval does.

    Preprocessing is TF-slim's eval preprocessing (central crop 87.5%, bilinear resize without antialiasing, scale to [-1, 1]), so a full ImageNet validation run is comparable with the catalog's figures.

    Example: mobilenet-zoo eval v1_0.25_128_quant --data imagenet/val --limit 1000

    Example: mobilenet-zoo eval v1_0.25_128_quant --format ckpt --compare tflite --data imagenet/val
    """
    from zoo.run.evaluation import evaluate
    from zoo.data.images import check_crop

    check_crop(crop)
    bar = _ProgressBar() if sys.stderr.isatty() and not as_json else None
    try:
        result = evaluate(model, data, format=format_value(fmt), threads=threads, batch_size=batch_size, limit=limit,
                          crop=crop, split=split.value, skip_errors=skip_errors,
                          catalog=load_catalog(), cache_dir=cache_dir(),
                          progress=bar.update if bar else False, fake_quant=fake_quant_value(no_fake_quant, fmt),
                          compare=format_value(compare),
                          **runtime_options(runtime, precision, openvino_device))
    finally:
        if bar:
            bar.stop()
    if as_json:
        print_json(result.to_json())
        return
    _print_summary(result)


class _ProgressBar:
    """A rich bar on stderr with the running top-1 and images/s (started on first update)."""

    def __init__(self):
        self.bar = None
        self.task = None

    def update(self, task, done: int, total: int | None) -> None:
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("eval", total=total, stats="")
        figures = task.stats
        stats = (f"top-1 {figures['top1']:.1f}%  {figures['images_per_s']:.0f} img/s"
                 + (f"  {figures['skipped']} skipped" if figures["skipped"] else ""))
        self.bar.update(self.task, completed=done, stats=stats)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _print_summary(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = terminal()
    console.print(f"[bold]{escape(result.id)}[/] ({result.format} on {result.runtime}) on {escape(result.data)}",
                  soft_wrap=True)
    other = result.compared
    table = Table(title_justify="left")
    table.add_column("")
    table.add_column("measured" if other is None else result.format, justify="right")
    if other is not None:
        table.add_column(other.format, justify="right")
    table.add_column("catalog", justify="right")
    table.add_column("diff", justify="right")
    for name in ("top1", "top5"):
        measured, claimed = getattr(result, name), getattr(result, "claimed_" + name)
        diff = "-" if claimed is None else f"{measured - claimed:+.1f}"
        cells = [f"{measured:.1f}% ±{result.margin(name):.1f}"]
        if other is not None:
            cells.append(f"{getattr(other, name):.1f}% ±{other.margin(name):.1f}")
        table.add_row(f"top-{name[-1]}", *cells, _pct(claimed), diff)
    console.print(table)
    copies = f", {result.copies} model copies side by side" if result.copies > 1 else ""
    console.print(f"{result.images} images in {result.seconds:.1f} s ({result.images_per_s:.1f} images/s{copies})"
                  + (f"; {result.skipped} unreadable, skipped" if result.skipped else ""))
    if other is not None:
        agreement = "-" if result.top1_agreement is None else f"{result.top1_agreement:.1f}%"
        console.print(f"{other.format} on {other.runtime}: {other.images} images in {other.seconds:.1f} s; "
                      f"the two agree on top-1 for {agreement} of the images")
    for source, reason in result.skipped_images[:5]:
        console.print(f"  skipped {escape(source)}: {escape(reason)}", style="yellow", soft_wrap=True)
    if result.skipped > 5:
        console.print(f"  ... and {result.skipped - 5} more", style="yellow")
    if result.claimed_top1 is None:
        console.print("the catalog has no published accuracy for this model", style="dim")
    for note in result.notes:
        console.print(f"note: {escape(note)}", style="dim", soft_wrap=True)
    console.print("± is a 95% interval from the number of images; the catalog's figures are for the "
                  "50,000 ILSVRC-2012 validation images", style="dim")
