"""Fine-tuning speed on this machine: head-only vs backbone training, and TFLite conversion.

    python benchmarks/bench_finetune.py [--epochs 3]

Data: scikit-learn's digits (1797 real scans) written as 32x32 class folders; model: the
real-weight v1 0.25_128 checkpoint built from the vendored uint8 TFLite file
(tests/real_weights.py). Two runs of `zoo.finetune` in this process, each reporting from
its own finetune.json:

1. head-only: the frozen backbone runs once per image (feature extraction, images/s; with
   --quantize int8, as here, also through the int8 backbone, so the head learns both),
   then every head epoch trains on cached features (images/s per epoch);
2. --train-backbone: after the head epochs, full epochs through the network (images/s);
3. export: float TFLite conversion, and int8 conversion + calibration (200 images);
4. with --memory: peak RSS of head-only --quantize int8 runs (float and int8 features) over 1x
   and 4x the images (hard links), each in its own process: streaming keeps it flat.

--feature-runtimes instead: the frozen backbone's feature pass on Keras and on LiteRT (its
float .tflite, converted in the run), head-only runs alternating, each with an empty feature
cache; for the real-weight v1 0.25_128 and a random-weight slim v1 1.0_224 (tests/slim_builders.py;
the speed of a pass does not depend on the weights' values). The ratio: LiteRT's pass time
(conversion included) over Keras', and the whole run's.

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


_PEAK = """
import resource, sys
sys.path.insert(0, sys.argv[4])
from zoo.catalog import load_catalog
from zoo.training.finetuning import finetune
finetune("v1_0.25_128", sys.argv[1], sys.argv[2], checkpoint=sys.argv[3], epochs=1, catalog=load_catalog(),
         quantize="int8", progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_memory(data: Path, prefix: Path, tmp: Path, copies: int) -> tuple[int, float]:
    """(images, peak RSS in MB) of a head-only run over ``copies`` hard-linked copies of ``data``."""
    import subprocess

    root = tmp / f"x{copies}"
    for folder in sorted(data.iterdir()):
        (root / folder.name).mkdir(parents=True)
        for copy in range(copies):
            for image in folder.iterdir():
                os.link(image, root / folder.name / f"{copy}_{image.name}")
    proc = subprocess.run([sys.executable, "-c", _PEAK, str(root), str(tmp / f"out{copies}"), str(prefix),
                           str(REPO)], capture_output=True, text=True, check=True)
    images = sum(1 for _ in root.rglob("*.png"))
    return images, int(proc.stdout.split()[-1]) / 1024


def feature_runtimes(repeats: int) -> None:
    """Keras against LiteRT for the feature pass, whole head-only runs alternating (see the docstring)."""
    from tests import real_weights, slim_builders
    from tests.digits import write_digits
    from zoo.catalog import load_catalog
    from zoo.training.finetuning import finetune

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_digits(tmp / "digits", size=32)
        big = slim_builders.write_v1_model(tmp / "v1_1.0_224", width=1.0, resolution=224)
        models = [(real_weights.CATALOG_ID, real_weights.write_checkpoint(tmp / "ckpt")), ("v1_1.0_224", big.checkpoint)]
        for model, prefix in models:
            seen: dict[str, list[tuple[float, float]]] = {"keras": [], "litert": []}
            for repeat in range(repeats):
                for runtime in ("keras", "litert") if repeat % 2 == 0 else ("litert", "keras"):
                    out = tmp / f"{model}_{runtime}_{repeat}"
                    result = finetune(model, data, out, checkpoint=prefix, epochs=1, catalog=load_catalog(),
                                      progress=False, cache_dir=tmp / f"cache_{out.name}", feature_runtime=runtime)
                    (feat,) = json.loads((out / "finetune.json").read_text())["training"]["feature_extraction"]
                    assert feat["runtime"] == runtime, feat
                    seen[runtime].append((feat["seconds"], result.seconds))
                    if runtime == "litert":
                        diff = feat["max_abs_feature_diff"]
            keras, litert = (statistics.median(x[0] for x in seen[k]) for k in ("keras", "litert"))
            keras_run, litert_run = (statistics.median(x[1] for x in seen[k]) for k in ("keras", "litert"))
            print(f"{model}: feature pass over {feat['images']} images: Keras {keras:.1f} s "
                  f"({feat['images'] / keras:.0f} images/s), LiteRT {litert:.1f} s ({feat['images'] / litert:.0f} "
                  f"images/s, conversion included), ratio {litert / keras:.2f}x; whole head-only run (1 epoch) "
                  f"{keras_run:.1f} s vs {litert_run:.1f} s ({litert_run / keras_run:.2f}x); max |d feature| {diff:.2g}; "
                  f"medians of {repeats}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--memory", action="store_true",
                        help="also compare peak RSS of head-only runs over 1x and 4x the images")
    parser.add_argument("--feature-runtimes", action="store_true",
                        help="only compare the feature pass on Keras and on LiteRT")
    parser.add_argument("--repeats", type=int, default=2, help="runs per runtime with --feature-runtimes")
    args = parser.parse_args()
    if args.feature_runtimes:
        feature_runtimes(args.repeats)
        return
    from tests import real_weights
    from tests.digits import write_digits
    from zoo.catalog import load_catalog
    from zoo.training.finetuning import finetune

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_digits(tmp / "digits", size=32)
        prefix = real_weights.write_checkpoint(tmp / "ckpt")
        runs = {}
        for name, backbone in (("head-only", False), ("backbone", True)):
            result = finetune(real_weights.CATALOG_ID, data, tmp / name, checkpoint=prefix, epochs=args.epochs,
                              train_backbone=backbone, quantize="int8", catalog=load_catalog(), progress=False)
            runs[name] = (result, json.loads((tmp / name / "finetune.json").read_text()))
        memory = [peak_memory(data, prefix, tmp, copies) for copies in (1, 4)] if args.memory else []

    head_result, head = runs["head-only"]
    bb_result, bb = runs["backbone"]
    images = head["data"]["train_images"]
    feat = head["training"]["feature_extraction"][0]  # the head phase's; with --quantize int8 float and int8
    per_epoch = lambda manifest, phase: [h["seconds"] for h in manifest["training"]["history"]  # noqa: E731
                                         if h["phase"] == phase][1:] or [float("nan")]
    head_epoch = statistics.median(per_epoch(head, "head"))
    head_views = images * (1 + head["training"]["augmented_views"]) * (2 if feat["int8"] else 1)
    bb_epoch = statistics.median(per_epoch(bb, "backbone"))
    print(f"train images: {images}, val images: {head['data']['val_images']}, input 128x128, v1 0.25")
    print(f"head-only feature extraction (float and int8 backbone, int8 conversion included): "
          f"{feat['images'] / feat['seconds']:.0f} images/s ({feat['images']} images once, {feat['seconds']:.1f} s)")
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
    if memory:
        (n1, m1), (n4, m4) = memory
        print(f"peak memory, head-only --quantize int8 run: {n1} images {m1:.0f} MB, {n4} images {m4:.0f} MB "
              f"(ratio {m4 / m1:.2f} for {n4 / n1:.0f}x the images)")
    for name, (result, _) in runs.items():
        print(f"{name}: held-out top-1 Keras {result.val_top1}%, TFLite {result.tflite_top1}%, "
              f"int8 {result.int8_top1}%")


if __name__ == "__main__":
    main()
