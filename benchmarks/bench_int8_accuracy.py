"""Float vs int8 TFLite top-1 after fine-tuning on real data: the three ways to an int8 file.

    python benchmarks/bench_int8_accuracy.py [--seeds 0 1 2] [--head-epochs 5] [--backbone-epochs 8]

Data: scikit-learn's digits (1797 real scans, 32x32 class folders; 1438 train, 359 held out);
model: the real-weight v1 0.25_128 checkpoint built from the vendored uint8 TFLite file
(tests/real_weights.py). For each seed and mode (head-only, --train-backbone):

* ``finetune --quantize int8``: the head also learns from the int8 backbone's features
  (zoo.training.quantized_features); its float, float TFLite and int8 TFLite top-1;
* ``finetune --quantize int8 --qat``: quantization-aware training (zoo.training.qat), the int8
  file converted from the network's own ranges; its float TFLite and int8 TFLite top-1;
* baseline, in the same run: ``finetune`` without ``--quantize`` (a head trained on float
  features only, what ``--quantize int8`` did before) and that model's saved_model converted
  by the same ``write_int8_tflite`` on the same 200 calibration images: plain post-training
  quantization. Its float and int8 top-1.

Accuracy, not speed: nothing here is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def post_training_int8_top1(out: Path, data: Path) -> float:
    """Top-1 of OUT's float model quantized after training, on the held-out images finetune used."""
    import numpy as np

    from zoo.data.images import preprocessed_batches
    from zoo.training.export import write_int8_tflite
    from zoo.formats.finetuned import entry_for_dir
    from zoo.training.finetuning import DEFAULT_VAL_SPLIT, _calibration_sample
    from zoo.formats.tflite import load_tflite
    from zoo.training.inputs import scan_image_folder, split

    entry, _ = entry_for_dir(out)
    size = entry.input_size[:2]
    train, val = split(scan_image_folder(data), DEFAULT_VAL_SPLIT, 0)
    calibration = _calibration_sample(train, 200)
    path = write_int8_tflite(out / "saved_model", out.parent / f"{out.name}_ptq_int8.tflite",
                             lambda: preprocessed_batches(calibration, size))
    model = load_tflite(entry, path)
    probs = np.concatenate([model(batch) for batch in preprocessed_batches(val.files, size, batch=64)])
    return round(float(100 * np.mean(np.argmax(probs, axis=1) == np.asarray(val.labels))), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--backbone-epochs", type=int, default=8)
    args = parser.parse_args()
    from tests import real_weights
    from tests.digits import write_digits
    from zoo.catalog import load_catalog
    from zoo.training.finetuning import finetune

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_digits(tmp / "digits", size=32)
        prefix = real_weights.write_checkpoint(tmp / "ckpt")
        for mode, backbone, epochs in (("head-only", False, args.head_epochs),
                                       ("--train-backbone", True, args.backbone_epochs)):
            for seed in args.seeds:
                common = dict(checkpoint=prefix, epochs=epochs, train_backbone=backbone, seed=seed,
                              catalog=load_catalog(), progress=False)
                aware = finetune(real_weights.CATALOG_ID, data, tmp / f"{mode}{seed}", quantize="int8", **common)
                qat = finetune(real_weights.CATALOG_ID, data, tmp / f"{mode}{seed}_qat", quantize="int8", qat=True,
                               **common)
                plain = finetune(real_weights.CATALOG_ID, data, tmp / f"{mode}{seed}_plain", **common)
                ptq = post_training_int8_top1(tmp / f"{mode}{seed}_plain", data)
                rows.append((mode, epochs, seed, aware.tflite_top1, aware.int8_top1, plain.tflite_top1, ptq,
                             qat.tflite_top1, qat.int8_top1))
                print(f"{mode} --epochs {epochs} seed {seed}: int8-aware head: float {aware.tflite_top1}%, "
                      f"int8 {aware.int8_top1}% | qat: float {qat.tflite_top1}%, int8 {qat.int8_top1}% | "
                      f"float-only head + post-training int8: float {plain.tflite_top1}%, int8 {ptq}%", flush=True)
    print("\nmode | epochs | way | float | int8 | gap (points)")
    span = lambda values: f"{min(values):.1f}-{max(values):.1f}"  # noqa: E731
    for mode in ("head-only", "--train-backbone"):
        mine = [r for r in rows if r[0] == mode]
        for way, f, i in (("int8-aware head", 3, 4), ("qat", 7, 8), ("post-training", 5, 6)):
            gaps = [r[f] - r[i] for r in mine]
            print(f"{mode} | {mine[0][1]} | {way} | {span([r[f] for r in mine])} | {span([r[i] for r in mine])} | "
                  f"{span(gaps)} (median {statistics.median(gaps):.1f})")


if __name__ == "__main__":
    main()
