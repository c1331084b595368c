"""`restore`, `classify`, `bench` and `plot`: the commands that run models.

Importing this module stays light (typer only): numpy, Pillow, LiteRT, TensorFlow and
matplotlib are imported inside the command functions, so `list` never pays for them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .common import (MODEL_HELP, Cost, choices, exit_no_match, ModelFormat as Format, app, cache_dir, check_device, device_option,
                     family_option, format_value, json_option, load_catalog, model_format_option, quantized_option,
                     fake_quant_value, no_fake_quant_option, openvino_device_option, precision_option,
                     runtime_option, runtime_options, threads_option,
                     Precision, Runtime)
from zoo.formats.kinds import RUNTIMES, WEIGHT_SETS

from .completion import complete_model
from .output import print_json, terminal


Weights = choices("Weights", WEIGHT_SETS)
BenchRuntime = choices("BenchRuntime", RUNTIMES + ("all",))


def _restore(model: str, fmt: Optional[Format], **options):
    """Anything the resolver accepts -> a restored model (fetching if needed).
    ``fmt`` None: the file's own format, else the model's default (``default_format``)."""
    from zoo.formats.resolve import restore

    return restore(model, format_value(fmt), catalog=load_catalog(), cache_dir=cache_dir(), **options)


# ------------------------------------------------------------------ restore
def _quant_words(q: Optional[dict]) -> str:
    return f"real value = (q - {q['zero_point']}) x {q['scale']:g}" if q else "none"


def summary_lines(info: dict) -> list[tuple[str, str]]:
    """`restore`'s summary as (label, sentence) pairs: words, not the JSON keys."""
    h, w, c = info["input_shape"][1:]
    dtype = info.get("input_dtype", "float32")
    lines = [("model", f"{info['id']} ({info['format']})"), ("file", info["source"])]
    if info.get("runtime"):
        lines.append(("runtime", info["runtime"] + (f" {info['runtime_version']}" if info.get("runtime_version") else "")
                      + (f" on {info['device']}" if info.get("device") else "")))
    if info.get("precision"):
        lines.append(("precision", info["precision"]))
    lines.append(("input", f"images, batch x {h} x {w} x {c} (RGB), {dtype}"
                  + (f" ({_quant_words(info.get('input_quantization'))})" if info.get("input_quantization") else "")
                  + f"; pass floats in [{info['input_range'][0]:g}, {info['input_range'][1]:g}]"))
    lines.append(("output", f"{info['output_shape'][1]} class {info['output']}"
                  + (f", {info['output_dtype']}" if info.get("output_dtype") else "")
                  + (f" ({_quant_words(info.get('output_quantization'))})" if info.get("output_quantization") else "")))
    batch = info.get("batch")
    if batch is not None:
        lines.append(("batch size", "any (dynamic)" if batch == "dynamic" else
                      f"{batch} in the file (larger batches run "
                      + ("image by image)" if batch == 1 else f"{batch} images at a time)")))
    params = info.get("parameters")
    if params and not info.get("catalog_params_m"):  # e.g. a fine-tuned model: no published figure
        lines.append(("parameters", f"{params:,} ({params / 1e6:.3f} M)"))
    elif params:
        diff = params / 1e6 - info["catalog_params_m"]
        lines.append(("parameters", f"{params:,} ({params / 1e6:.3f} M); the catalog says "
                      f"{info['catalog_params_m']} M ({diff:+.3f} M)"))
    if info.get("weights"):
        lines.append(("weights", "exponential moving averages (what upstream evaluates)" if info["weights"] == "ema"
                      else "raw trained variables"))
    if "used" in info:
        lines.append(("variables", f"{len(info['used'])} read from the checkpoint"))
    for reason, names in (info.get("skipped") or {}).items():
        lines.append(("not used", f"{len(names)} {reason}" + (f" (e.g. {names[0]})" if names else "")))
    if "threads" in info:
        lines.append(("threads", "the runtime's default" if info["threads"] is None else str(info["threads"])))
    if info.get("file_bytes"):
        from zoo._util.units import format_bytes

        lines.append(("file size", format_bytes(info["file_bytes"])))
    for key in ("input_tensor", "output_tensor"):
        if info.get(key):
            lines.append((key.replace("_", " "), info[key]))
    for note in info.get("notes") or []:
        lines.append(("note", note))
    if info.get("exported_to"):
        lines.append(("exported to", info["exported_to"]))
    if info.get("exported_batch"):
        lines.append(("exported batch", info["exported_batch"]))
    return lines


@app.command("restore")
def restore_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP, autocompletion=complete_model),
    fmt: Optional[Format] = model_format_option(),
    weights: Optional[Weights] = typer.Option(
        None, "--weights", help="ckpt only: moving averages of all variables (ema), of trainable ones only (ema-trainable), "
             "or raw variables (default: the set that reproduces the tarball's frozen graph, else ema)."),
    no_fake_quant: bool = no_fake_quant_option(),
    runtime: Optional[Runtime] = runtime_option(),
    precision: Optional[Precision] = precision_option(),
    openvino_device: Optional[str] = openvino_device_option(),
    threads: Optional[int] = threads_option(),
    export: Optional[Path] = typer.Option(
        None, "--export", metavar="PATH", help="Also write the model there, signature images -> probabilities "
                                             "(a SavedModel directory for ckpt/frozen; a .tflite file or directory for tflite)."),
    as_json: bool = json_option(),
) -> None:
    """Restore a model and describe it: shapes, input range, parameters vs the catalog.

    Example: mobilenet-zoo restore v1_0.25_128_quant --format ckpt --weights raw --export ./saved
    """
    from zoo.errors import UsageError

    if weights is not None and fmt is not Format.ckpt:
        raise UsageError("--weights applies to --format ckpt only")
    restored = _restore(model, fmt, weights=weights.value if weights else None, threads=threads,
                        fake_quant=fake_quant_value(no_fake_quant, fmt), **runtime_options(runtime, precision, openvino_device))
    info = restored.summary()
    if export is not None:
        info["exported_to"] = str(restored.export(export))
        if getattr(restored, "export_batch", None):  # tflite: "dynamic" or "fixed at 1"
            info["exported_batch"] = restored.export_batch
    if as_json:
        print_json(info)
        return
    from .output import style

    lines = summary_lines(info)
    width = max(len(label) for label, _ in lines)
    for label, text in lines:  # one fact a line, never hard-wrapped (paths stay copy-pasteable)
        print(f"{style(f'{label:{width}}', 'bold')}  {text}")


# ------------------------------------------------------------------ classify
@app.command("classify")
def classify_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP, autocompletion=complete_model),
    images: list[Path] = typer.Argument(..., help="JPEG, PNG or BMP files, or directories of them "
                                                  "(their images, sorted by name).", show_default=False),
    fmt: Optional[Format] = model_format_option(),
    top: int = typer.Option(5, "--top", "-k", min=1, help="How many classes to show per image."),
    crop: float = typer.Option(
        0.875, "--crop", metavar="F",
        help="Central-crop fraction before resizing: 0.875 is TF-slim's eval preprocessing, 1.0 no crop."),
    threads: Optional[int] = threads_option(),
    runtime: Optional[Runtime] = runtime_option(),
    precision: Optional[Precision] = precision_option(),
    openvino_device: Optional[str] = openvino_device_option(),
    skip_errors: bool = typer.Option(False, "--skip-errors",
                                     help="Report unreadable images and go on with the others "
                                          "(exit code 1 at the end if any failed)."),
    compact: bool = typer.Option(False, "--compact", "-1",
                                 help="One line per image: path, then label (score) for each of the top classes."),
    as_json: bool = json_option(),
) -> None:
    """Top-K ImageNet classes for each image.

    Images are cropped to their central 87.5% and resized as TF-slim evaluates
    (the setting behind the catalog's top-1); --crop 1.0 keeps the whole picture.

    Example: mobilenet-zoo classify v1_0.25_128_quant cat.jpg photos/ --top 3 --compact --skip-errors
    """
    from zoo.run.classification import classify, expand_image_paths
    from zoo.data.images import check_crop

    from .output import Column, print_table, style

    check_crop(crop)
    paths = expand_image_paths(images, skip_errors=skip_errors)
    results = classify(model, paths, top=top, format=format_value(fmt), crop=crop, catalog=load_catalog(),
                       cache_dir=cache_dir(), threads=threads, skip_errors=skip_errors,
                       **runtime_options(runtime, precision, openvino_device))
    failed = [r for r in results if r.error is not None]
    if failed:
        from .errors import print_error

        for r in failed:  # the image's own error, formatted like any other (--skip-errors went on)
            print_error(r.error)
    answered = [r for r in results if r.error is None]
    if as_json:
        print_json([r.to_json() for r in results])
    elif compact:
        width = max((len(r.image) for r in answered), default=0)
        for r in answered:
            print(f"{r.image:{width}}  " + "; ".join(f"{p.label} ({p.score:.3f})" for p in r.predictions))
    else:
        columns = [Column("#", "right"), Column("label", keep=2), Column("index", "right", keep=1),
                   Column("score", "right", keep=3)]
        for i, r in enumerate(answered):
            print(("\n" if i else "") + style(r.image, "bold"))  # a path of its own: never wrapped
            print_table(columns, [[str(rank), p.label, str(p.index), f"{p.score:.4f}"]
                                  for rank, p in enumerate(r.predictions, 1)])
    if failed:
        print(f"{len(failed)} of {len(results)} image{'s' if len(results) != 1 else ''} could not be read",
              file=sys.stderr)
        raise typer.Exit(1)


# ------------------------------------------------------------------ bench
@app.command("bench")
def bench_cmd(
    models: list[str] = typer.Argument(..., help=MODEL_HELP.replace("Model", "Models", 1), show_default=False,
                                       autocompletion=complete_model),
    fmt: Optional[Format] = model_format_option(),
    runtime: Optional[BenchRuntime] = runtime_option(
        "Which engine to time: litert, tensorflow, onnxruntime, openvino (default: the format's own), or all: "
        "every installed runtime on every format the model has, compared with the format's own runtime."),
    precision: Optional[Precision] = precision_option(),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="CPU threads for the runtime."),
    runs: int = typer.Option(50, "--runs", min=1, help="Timed runs per model."),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed runs first."),
    as_json: bool = json_option(),
) -> None:
    """Time single-image inference here and record it as device `local`.

    The median and 90th percentile of --runs timed calls are saved per machine; then
    `pick --device local` and `plot --x latency --device local` use them. For
    --format ckpt, TensorFlow's thread pools are per process: one --threads per run.

    Example: mobilenet-zoo bench v1_0.25_128_quant v2_0.35_96 --threads 2 --runs 50
    """
    from zoo.run.benchmark import CHECK_IMAGES, bench
    from zoo.errors import ZooError

    bar = None
    tasks: dict[str, int] = {}

    def show_progress(task, done: int, total: int) -> None:
        if task.id not in tasks:
            tasks[task.id] = bar.add_task(task.id, total=total)
        bar.update(tasks[task.id], completed=done)

    if sys.stderr.isatty():  # a progress bar on a terminal only, never in logs or pipes
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
    try:
        results = bench(models, format_value(fmt), threads=threads, runs=runs, warmup=warmup,
                        catalog=load_catalog(), cache_dir=cache_dir(),
                        progress=show_progress if bar is not None else False, record=False,
                        runtime=runtime.value if runtime else None, precision=precision.value if precision else None)
    finally:
        if bar is not None:
            bar.stop()
    try:  # the figures are printed first whatever happens to the profile file
        for r in results:
            r.record()
        save_error = None
    except ZooError as exc:
        save_error = exc
    if as_json:
        print_json([r.to_json() for r in results])
        if save_error is not None:
            raise save_error
        return
    from zoo._util.units import format_ms

    from .output import Column, print_table, style

    compared = any(r.max_abs_dp is not None for r in results)
    # on a narrow terminal the lowest `keep` goes first: model, runtime and median stay longest
    columns = [Column("model"), Column("runtime", keep=8), Column("format", keep=6), Column("precision", keep=2),
               Column("threads", "right", keep=1), Column("median ms", "right", keep=7),
               Column("p90 ms", "right", keep=3)]
    if compared:
        columns += [Column("top-1 agree", "right", keep=4), Column("max |dp|", "right", keep=5)]
    fastest = {r.id: min(x.median_ms for x in results if x.id == r.id) for r in results}
    rows = []
    for r in results:  # rounded like the published figures (one decimal), so `list --device local` reads the same
        row = [r.id + (" *" if compared and r.median_ms == fastest[r.id] else ""), r.runtime, r.format,
               r.precision or "file's", str(r.threads), format_ms(r.median_ms), format_ms(r.p90_ms)]
        if compared:
            row += [f"{r.top1_agreement:.0f}%", f"{r.max_abs_dp:.2g}"]
        rows.append(row)
    print_table(columns, rows, title=f"latency on this machine ({runs} runs after {warmup} warm-up)")
    if compared:
        print(style(f"* fastest; agreement with the format's own runtime on {CHECK_IMAGES} fixed images",
                    "dim"), file=sys.stderr)
    if save_error is not None:
        raise save_error
    print(style("recorded as device `local` (and local-<runtime>, local-fastest, local-<format>-<threads>t); "
                "`pick --device local --runtime any` ranks by the fastest", "dim"), file=sys.stderr)


# ------------------------------------------------------------------ plot
@app.command("plot")
def plot_cmd(
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE.png", help="Where to write the PNG."),
    x: Cost = typer.Option(Cost.macs, "--x", help="Cost on the x axis: macs, params, size or latency."),
    device: Optional[str] = device_option("Latency device for --x latency (e.g. pixel1, local)."),
    family: Optional[list[str]] = family_option(),
    quantized: Optional[bool] = quantized_option(),
) -> None:
    """Chart top-1 against a cost with the Pareto frontier marked.

    Example: mobilenet-zoo plot --x latency --device pixel1 --family v2 --family v3 --out frontier.png
    """
    from zoo.catalog.plot import plot
    from zoo.catalog.selection import Filters

    catalog = load_catalog()
    check_device(catalog, device)
    entries = Filters(family=family or None, quantized=quantized).apply(catalog.entries)
    if not entries:
        exit_no_match()
    drawn = plot(entries, x=x.value, device=device, out=out)
    console = terminal()
    console.print(f"wrote {drawn['out']}: {drawn['plotted']} model{'' if drawn['plotted'] == 1 else 's'}, "
                  f"frontier of {len(drawn['frontier'])}"
                  + (f"; left out {drawn['left_out_no_top1']} without top-1" if drawn["left_out_no_top1"] else "")
                  + (f", {drawn['left_out_no_cost']} without a figure" if drawn["left_out_no_cost"] else ""))
