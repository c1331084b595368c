"""`finetune` and `export`: from a published checkpoint to your own classes and deployable files.

Importing this module stays light (typer only); TensorFlow loads inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from zoo.training.distribute import STRATEGIES
from zoo.training.options import (DEFAULT_CALIBRATION_IMAGES, EXPORT_TARGETS, FEATURE_RUNTIMES,
                                  FROM_SCRATCH_ENOUGH_IMAGES, INT8_IO_TYPES, OWN_RANGES, QUANTIZE_MODES)

from .common import app, cache_dir, choices, load_catalog
from .output import print_json, terminal


Strategy = choices("Strategy", STRATEGIES)
Quantize = choices("Quantize", QUANTIZE_MODES)
FeatureRuntime = choices("FeatureRuntime", FEATURE_RUNTIMES)
Target = choices("Target", EXPORT_TARGETS)
IntegerIO = choices("IntegerIO", INT8_IO_TYPES)


class EpochLines:
    """`finetune`'s progress on stderr: one line per finished epoch (loss, accuracy, validation
    accuracy, images/s), and on a terminal a bar for the epoch under way."""

    def __init__(self, bars: bool):
        self.bars = bars
        self.bar = None
        self.current = None

    def __call__(self, task, done: int, total: int | None) -> None:
        stats = task.stats
        if self.bars and not stats.get("finished"):
            if self.current != task.key:
                self.close()
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

                self.bar = Progress(TextColumn(task.desc), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[figures]}"), console=Console(stderr=True), transient=True)
                self.bar.start()
                self.bar_task = self.bar.add_task(task.desc, total=total, figures="")
                self.current = task.key
            self.bar.update(self.bar_task, completed=done,
                            figures=f"loss {stats['loss']:.3f}  accuracy {100 * stats['accuracy']:.1f}%")
            return
        if stats.get("finished"):
            self.close()
            text = f"{task.desc}: loss {stats['loss']:.4f}, accuracy {100 * stats['accuracy']:.1f}%"
            if stats.get("val_accuracy") is not None:
                text += f", val accuracy {100 * stats['val_accuracy']:.1f}%"
            print(text + f" ({stats['seconds']:.1f} s, {stats['images_per_s']:.0f} images/s)", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar, self.current = None, None


def epoch_progress():
    """The callback `finetune` reports to (False when --quiet)."""
    from zoo import config

    return False if config.quiet() else EpochLines(bars=sys.stderr.isatty())


@app.command("finetune")
def finetune_cmd(
    model: str = typer.Argument(..., help="Catalog model id (its slim checkpoint is restored) or a finetune OUT dir."),
    data: Path = typer.Option(..., "--data", metavar="DIR", help="Training images: DIR/<class>/*.jpg (classes sorted)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="OUT", help="Directory to create with the trained model."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Epochs (head-only; with --train-backbone, as many again)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Global batch size (split over devices)."),
    learning_rate: Optional[float] = typer.Option(
        None, "--learning-rate", metavar="LR", help="Adam learning rate of the head (default 1e-3); "
                                                    "the backbone phase uses a tenth."),
    train_backbone: bool = typer.Option(
        False, "--train-backbone/--head-only",
        help="After the head, also train the backbone (batch norm stays frozen). Default: head only."),
    val_data: Optional[Path] = typer.Option(None, "--val-data", metavar="DIR", help="Validation images, same classes."),
    val_split: Optional[float] = typer.Option(
        None, "--val-split", metavar="F", help="Fraction of each class held out when no --val-data (default 0.2)."),
    quantize: Optional[Quantize] = typer.Option(
        None, "--quantize", help="Also write model_int8.tflite: full-integer, uint8 I/O, calibrated on training "
                                 "images; the head also learns from the int8 backbone's features."),
    qat: bool = typer.Option(
        False, "--qat", help="With --quantize int8: quantization-aware training (fake-quant in the graph, v1 and v2); "
                             "MODEL may then be a _quant model, continued from its published ranges."),
    strategy: Strategy = typer.Option(
        Strategy.auto, "--strategy", help="tf.distribute: mirrored (local GPUs/devices), multiworker (TF_CONFIG)."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", metavar="PREFIX", help="A local slim checkpoint for MODEL's architecture instead of fetching."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists (only once training succeeded)."),
    restart: bool = typer.Option(
        False, "--restart", help="Discard the progress an interrupted run of this OUT saved and start afresh "
                                 "(default: resume from its last finished epoch)."),
    feature_runtime: FeatureRuntime = typer.Option(
        FeatureRuntime.auto, "--feature-runtime",
        help="What runs the frozen backbone over the images: litert (a float .tflite of it, checked against "
             "Keras on the first batch), keras, or auto (LiteRT when the pass is long enough to pay for "
             "converting the backbone)."),
    from_scratch: bool = typer.Option(
        False, "--from-scratch", help="Train MODEL's architecture from random weights, every layer and batch norm "
                                      "(nothing is fetched): for a large data set of your own; warns below "
                                      f"{FROM_SCRATCH_ENOUGH_IMAGES:,} images."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fine-tune a MobileNet to the classes in DIR; write Keras, SavedModel and TFLite files to OUT.

    Head-only by default: the frozen backbone runs once per image and a new classifier
    trains on its features. Progress goes to stderr; Ctrl-C keeps the best model so far.
    A run that was killed resumes when the same command runs again (from its last finished
    epoch, or mid-way through the feature pass); --restart starts afresh.

    Example: mobilenet-zoo finetune v1_0.25_128 --data photos/ --out my_model --quantize int8

    Example: mobilenet-zoo finetune v1_0.25_128_quant --data photos/ --out my_model --quantize int8 --qat
    """
    from zoo.training.finetuning import finetune

    result = finetune(model, data, out, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                      train_backbone=train_backbone, val_data=val_data, val_split=val_split,
                      quantize=quantize.value if quantize else None, qat=qat, strategy=strategy.value,
                      overwrite=overwrite, checkpoint=checkpoint, catalog=load_catalog(), restart=restart,
                      cache_dir=cache_dir(), command=["mobilenet-zoo", *sys.argv[1:]], progress=epoch_progress(),
                      feature_runtime=feature_runtime.value, from_scratch=from_scratch)
    if as_json:
        print_json(result.to_json())
        return
    console = terminal()
    if result.out is None:
        console.print(f"training finished on this worker ({result.epochs_done} epochs); the chief writes OUT")
        return
    lines = [f"wrote {result.out}: {len(result.classes)} classes, {result.train_images} training and "
             f"{result.val_images} validation images, {result.seconds:.0f} s"
             + (" (interrupted: best model so far)" if result.interrupted else ""),
             f"  held-out top-1: Keras {result.val_top1:.2f}%, model.tflite {result.tflite_top1:.2f}%"]
    if result.int8_top1 is not None:
        lines.append(f"  model_int8.tflite {result.int8_top1:.2f}% "
                     f"({result.int8_top1 - result.tflite_top1:+.2f} points vs float)")
    lines.append(f"  try: mobilenet-zoo classify {result.out} IMAGE")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="Catalog model id (restored from its checkpoint) or a finetune OUT dir."),
    to: Target = typer.Option(..., "--to", help="tflite (a file), saved_model (a directory), onnx (an .onnx file) "
                                                 "or openvino (an IR .xml with its .bin), both from the model's .tflite."),
    out: Path = typer.Option(..., "--out", "-o", metavar="PATH", help="Where to write it (must not exist)."),
    quantize: Optional[Quantize] = typer.Option(None, "--quantize", help="int8: full-integer TFLite (needs --calibration; a _quant model, or one fine-tuned with --qat, is quantized with its own fake-quant ranges instead)."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", metavar="DIR", help="Representative images (any layout) to calibrate int8 with."),
    calibration_size: int = typer.Option(DEFAULT_CALIBRATION_IMAGES, "--calibration-size", min=1, help="How many of them to use at most."),
    int8_io: IntegerIO = typer.Option(INT8_IO_TYPES[0], "--int8-io", help="Integer type of the int8 model's input and output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace PATH if it exists."),
    force: bool = typer.Option(False, "--force", help="onnx/openvino: write the file even when it fails the agreement check."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Convert a catalog model or a fine-tuned one to TFLite (float or full-integer), a SavedModel, ONNX or OpenVINO IR.

    An int8 export is checked against the float conversion on the calibration images
    (top-1 agreement). Beside a .tflite goes OUT.zoo.json, a card naming the model (and a
    fine-tuned model's classes), so that classify, eval and bench take OUT back by itself.

    --to onnx and --to openvino convert the model's .tflite (a quantized model's uint8 one) and
    check the result against it with LiteRT, on the --calibration images or on 16 fixed
    pseudo-random ones: top-1 agreement and max |dp|, printed and recorded in the card. Below
    99% agreement or above 0.05 max |dp| nothing is written, unless --force.

    Example: mobilenet-zoo export v1_0.25_128 --to tflite --quantize int8 --calibration photos/ --out m.tflite

    Example: mobilenet-zoo export v1_0.25_128_quant --to tflite --quantize int8 --out q.tflite

    Example: mobilenet-zoo export v1_0.25_128_quant --to onnx --calibration photos/ --out m.onnx
    """
    from zoo.training.export import export_model

    result = export_model(model, to.value, out, quantize=quantize.value if quantize else None,
                          calibration=calibration, calibration_size=calibration_size, io_type=int8_io.value,
                          overwrite=overwrite, catalog=load_catalog(),
                          cache_dir=cache_dir(), force=force)
    if as_json:
        print_json(result.to_json())
        return
    text = f"wrote {result.out} ({result.to}{', int8' if result.quantize else ''}, {result.seconds:.1f} s)"
    if result.check is not None:
        check = result.check
        text += (f"; checked on {check['runtime']} against the .tflite on LiteRT, {check['images']} {check['kind']} "
                 f"images: top-1 agreement {check['top1_agreement']:.1f}%, max |dp| {check['max_abs_dp']:.2g}"
                 + (" (below the threshold: written because of --force)" if result.forced else ""))
    elif result.top1_agreement is not None:
        text += (f"; top-1 agreement with the float model on {result.calibration_images} calibration images: "
                 f"{result.top1_agreement:.1f}%")
    if result.ranges == OWN_RANGES:
        text += "; quantized with the model's own fake-quant ranges (no calibration)"
    terminal().print(text, soft_wrap=True, highlight=False, markup=False)
