"""`finetune` and `export`: from a published checkpoint to your own classes and deployable files.

Importing this module stays light (typer only); TensorFlow loads inside the commands.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .common import app, cache_dir, load_catalog
from .output import print_json, terminal


class Strategy(str, Enum):
    auto = "auto"
    mirrored = "mirrored"
    multiworker = "multiworker"


class Quantize(str, Enum):
    int8 = "int8"


class Target(str, Enum):
    tflite = "tflite"
    saved_model = "saved_model"


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
    strategy: Strategy = typer.Option(
        Strategy.auto, "--strategy", help="tf.distribute: mirrored (local GPUs/devices), multiworker (TF_CONFIG)."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", metavar="PREFIX", help="A local slim checkpoint for MODEL's architecture instead of fetching."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists (only once training succeeded)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fine-tune a MobileNet to the classes in DIR; write Keras, SavedModel and TFLite files to OUT.

    Head-only by default: the frozen backbone runs once per image and a new classifier
    trains on its features. Progress goes to stderr; Ctrl-C keeps the best model so far.

    Example: mobilenet-zoo finetune v1_0.25_128 --data photos/ --out my_model --quantize int8
    """
    from zoo.training.finetuning import finetune

    result = finetune(model, data, out, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                      train_backbone=train_backbone, val_data=val_data, val_split=val_split,
                      quantize=quantize.value if quantize else None, strategy=strategy.value,
                      overwrite=overwrite, checkpoint=checkpoint, catalog=load_catalog(),
                      cache_dir=cache_dir(), command=["mobilenet-zoo", *sys.argv[1:]])
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
    to: Target = typer.Option(..., "--to", help="tflite (a file) or saved_model (a directory)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="PATH", help="Where to write it (must not exist)."),
    quantize: Optional[Quantize] = typer.Option(None, "--quantize", help="int8: full-integer TFLite (needs --calibration)."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", metavar="DIR", help="Representative images (any layout) to calibrate int8 with."),
    calibration_size: int = typer.Option(200, "--calibration-size", min=1, help="How many of them to use at most."),
    int8_io: str = typer.Option("uint8", "--int8-io", help="Integer type of the int8 model's input and output: uint8 or int8."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace PATH if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Convert a catalog model or a fine-tuned one to TFLite (float or full-integer) or a SavedModel.

    An int8 export is checked against the float conversion on the calibration images
    (top-1 agreement).

    Example: mobilenet-zoo export v1_0.25_128 --to tflite --quantize int8 --calibration photos/ --out m.tflite
    """
    from zoo.training.export import export_model

    result = export_model(model, to.value, out, quantize=quantize.value if quantize else None,
                          calibration=calibration, calibration_size=calibration_size, io_type=int8_io,
                          overwrite=overwrite, catalog=load_catalog(),
                          cache_dir=cache_dir())
    if as_json:
        print_json(result.to_json())
        return
    text = f"wrote {result.out} ({result.to}{', int8' if result.quantize else ''}, {result.seconds:.1f} s)"
    if result.top1_agreement is not None:
        text += (f"; top-1 agreement with the float model on {result.calibration_images} calibration images: "
                 f"{result.top1_agreement:.1f}%")
    terminal().print(text, soft_wrap=True, highlight=False, markup=False)
