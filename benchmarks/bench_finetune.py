"""Fine-tuning speed on this machine: head-only vs backbone training, and TFLite conversion.

    python benchmarks/bench_finetune.py [--epochs 3]

Data: scikit-learn's digits (1797 real scans) written as 32x32 class folders; model: the
real-weight v1 0.25_128 checkpoint built from the vendored uint8 TFLite file
(tests/real_weights.py). Two runs of `zoo.finetune` in this process, each reporting from
its own finetune.json:

1. head-only: the frozen backbone runs once per image (feature extraction, images/s),
   then every head epoch trains on cached features (images/s per epoch);
2. --train-backbone: after the head epochs, full epochs through the network (images/s);
3. export: float TFLite conversion, and int8 conversion + calibration (200 images).

The ratio that matters: a head-only epoch vs a backbone epoch, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from tests import real_weights
    from tests.digits import write_digits
    from zoo.catalog import load_catalog
    from zoo.finetuning import finetune

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_digits(tmp / "digits", size=32)
        prefix = real_weights.write_checkpoint(tmp / "ckpt")
        runs = {}
        for name, backbone in (("head-only", False), ("backbone", True)):
            result = finetune(real_weights.CATALOG_ID, data, tmp / name, checkpoint=prefix, epochs=args.epochs,
                              train_backbone=backbone, quantize="int8", catalog=load_catalog(), progress=False)
            runs[name] = (result, json.loads((tmp / name / "finetune.json").read_text()))

    head_result, head = runs["head-only"]
    bb_result, bb = runs["backbone"]
    images = head["data"]["train_images"]
    feat = head["training"]["feature_extraction"]
    per_epoch = lambda manifest, phase: [h["seconds"] for h in manifest["training"]["history"]  # noqa: E731
                                         if h["phase"] == phase][1:] or [float("nan")]
    head_epoch = statistics.median(per_epoch(head, "head"))
    head_views = images * (1 + head["training"]["augmented_views"])
    bb_epoch = statistics.median(per_epoch(bb, "backbone"))
    print(f"train images: {images}, val images: {head['data']['val_images']}, input 128x128, v1 0.25")
    print(f"head-only feature extraction: {feat['images'] / feat['seconds']:.0f} images/s "
          f"({feat['images']} images once, {feat['seconds']:.1f} s)")
    print(f"head-only epoch on cached features: {head_views / head_epoch:.0f} images/s ({head_epoch:.2f} s)")
    print(f"backbone epoch: {images / bb_epoch:.0f} images/s ({bb_epoch:.2f} s)")
    print(f"ratio: a head-only epoch is {bb_epoch / head_epoch:.0f}x faster than a backbone epoch; "
          f"head-only total incl. extraction over {args.epochs} epochs: "
          f"{(feat['seconds'] + args.epochs * head_epoch):.1f} s vs backbone phase {args.epochs * bb_epoch:.1f} s")
    for name, (_, manifest) in runs.items():
        t = manifest["export_seconds"]
        print(f"{name}: export Keras+SavedModel {t['keras_and_saved_model']:.1f} s, float TFLite {t['tflite']:.1f} s, "
              f"int8 convert+calibrate ({manifest['quantization']['calibration_images']} images) "
              f"{t['int8_tflite_convert_and_calibrate']:.1f} s")
    for name, (result, _) in runs.items():
        print(f"{name}: held-out top-1 Keras {result.val_top1}%, TFLite {result.tflite_top1}%, "
              f"int8 {result.int8_top1}%")


if __name__ == "__main__":
    main()
