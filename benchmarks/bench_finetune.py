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

--hand-recipe instead: whole processes, alternating, on 600 digit scans (a disjoint 597 held
out) with the real v1 0.5_160 backbone (../shared's uint8 file dequantized; the vendored 0.25_128
when ../shared is absent): `mobilenet-zoo finetune --epochs 5` against the recipe of TF's transfer
learning tutorial (tensorflow.org/tutorials/images/transfer_learning: image_dataset_from_directory,
a frozen base called with training=False, global pooling, dropout 0.2, a Dense layer, fit) written
by hand over the same Keras backbone, timed to its saved .keras file; and a second finetune with
another learning rate that reuses the first one's features. Held-out top-1 of both models.

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


_HAND_RECIPE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
train, heldout, prefix, model_id, epochs, out = sys.argv[2:8]
import tensorflow as tf
import keras
import zoo

size = zoo.load_catalog().get(model_id).input_size[:2]
full = zoo.restore(prefix, format="ckpt", entry=model_id).keras_model
base = keras.Model(full.input, full.get_layer("global_average_pooling2d").output)  # pooled, before slim's dropout
base.trainable = False
train_ds, val_ds = keras.utils.image_dataset_from_directory(train, image_size=size, batch_size=32, seed=0,
                                                            validation_split=0.2, subset="both")
classes = len(train_ds.class_names)
inputs = keras.Input((*size, 3))
x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)        # MobileNet's [-1, 1]
x = base(x, training=False)
x = keras.layers.Flatten()(x)
x = keras.layers.Dropout(0.2)(x)
outputs = keras.layers.Dense(classes)(x)
model = keras.Model(inputs, outputs)
model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(train_ds.prefetch(tf.data.AUTOTUNE), validation_data=val_ds.prefetch(tf.data.AUTOTUNE),
          epochs=int(epochs), verbose=0)
model.save(out)
done = time.time()
open(out[:-len(".keras")] + ".tflite", "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
converted = time.time()
test_ds = keras.utils.image_dataset_from_directory(heldout, image_size=size, batch_size=64, shuffle=False)
_, top1 = model.evaluate(test_ds, verbose=0)
print(json.dumps({"done": done, "converted": converted, "top1": round(100 * top1, 2)}))
"""


def _split_digits(tmp: Path, train_images: int) -> tuple[Path, Path]:
    """The digits as two disjoint class-folder sets: the first ``train_images`` and the last ones."""
    from tests.digits import write_digits

    every = write_digits(tmp / "every", size=32)
    train, heldout = tmp / "train", tmp / "heldout"
    total = sum(1 for _ in every.rglob("*.png"))
    for image in sorted(every.rglob("*.png")):
        index = int(image.stem)
        target = train if index < train_images else heldout if index >= total - train_images else None
        if target is not None:
            (target / image.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(image, target / image.parent.name / image.name)
    return train, heldout


def hand_recipe(epochs: int, repeats: int) -> None:
    """Whole finetune processes against the hand-written Keras recipe, and a reused-feature rerun."""
    import subprocess
    import time

    from tests import real_weights

    real_160 = REPO.parent / "shared" / "realdata" / "mobilenet_v1_0.5_160_quant.tflite"
    model, tflite = ("v1_0.5_160", real_160) if real_160.is_file() else (real_weights.CATALOG_ID, real_weights.TFLITE)
    cli = [sys.executable, "-c", "from cli.app import main; main()"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, heldout = _split_digits(tmp, 600)
        prefix = real_weights.write_checkpoint(tmp / "ckpt", tflite=tflite)
        runs: dict[str, list[float]] = {"finetune": [], "reuse": [], "hand": [], "hand_tflite": []}
        top1: dict[str, list[float]] = {"finetune": [], "hand": []}
        parts: list[dict] = []

        def finetune(name: str, cache: Path, *extra: str) -> float:
            out = tmp / name
            began = time.perf_counter()
            subprocess.run([*cli, "--cache-dir", str(cache), "finetune", model, "--data", str(train), "--out",
                            str(out), "--checkpoint", str(prefix), "--epochs", str(epochs), *extra],
                           check=True, env=env, capture_output=True)
            return time.perf_counter() - began

        for repeat in range(repeats):
            cache, first = tmp / f"cache{repeat}", f"ft{repeat}"
            order = ("finetune", "hand") if repeat % 2 == 0 else ("hand", "finetune")
            for what in order:
                if what == "finetune":
                    runs["finetune"].append(finetune(first, cache))
                    runs["reuse"].append(finetune(f"reuse{repeat}", cache, "--learning-rate", "3e-4"))
                    manifest = json.loads((tmp / first / "finetune.json").read_text())
                    reused = json.loads((tmp / f"reuse{repeat}" / "finetune.json").read_text())
                    assert reused["training"]["features_from_cache"], "the rerun did not reuse the features"
                    parts.append({"features": sum(p["seconds"] for p in manifest["training"]["feature_extraction"]),
                                  **manifest["export_seconds"]})
                    scored = subprocess.run([*cli, "eval", str(tmp / first), "--data", str(heldout), "--json"],
                                            check=True, env=env, capture_output=True, text=True)
                    top1["finetune"].append(json.loads(scored.stdout)["top1"])
                else:
                    launched = time.time()
                    proc = subprocess.run([sys.executable, "-c", _HAND_RECIPE, str(REPO), str(train), str(heldout),
                                           str(prefix), model, str(epochs), str(tmp / f"hand{repeat}.keras")],
                                          check=True, env=env, capture_output=True, text=True)
                    report = json.loads(proc.stdout.strip().splitlines()[-1])
                    runs["hand"].append(report["done"] - launched)
                    runs["hand_tflite"].append(report["converted"] - launched)
                    top1["hand"].append(report["top1"])

    med = {name: statistics.median(values) for name, values in runs.items()}
    print(f"{model}, 600 digit scans (80% trained, 20% validation), {epochs} epochs, whole processes, "
          f"medians of {repeats}; held-out top-1 on 597 other scans")
    print(f"  mobilenet-zoo finetune: {med['finetune']:.1f} s (runs {', '.join(f'{s:.1f}' for s in runs['finetune'])}),"
          f" top-1 {statistics.median(top1['finetune']):.1f}%")
    print(f"  hand recipe (fit, then .keras saved): {med['hand']:.1f} s "
          f"(runs {', '.join(f'{s:.1f}' for s in runs['hand'])}), top-1 {statistics.median(top1['hand']):.1f}%")
    print(f"  hand recipe, then a float .tflite converted from it: {med['hand_tflite']:.1f} s")
    print(f"  ratio finetune / hand recipe: {med['finetune'] / med['hand']:.2f}x "
          f"({med['finetune'] / med['hand_tflite']:.2f}x against the recipe with its .tflite)")
    print(f"  second finetune, another learning rate, features reused: {med['reuse']:.1f} s, "
          f"{med['reuse'] / med['finetune']:.2f}x the first")
    keys = parts[0].keys()
    print("  inside finetune (median s): " + ", ".join(
        f"{key} {statistics.median(p[key] for p in parts):.1f}" for key in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs (default 3; 5 with --hand-recipe)")
    parser.add_argument("--memory", action="store_true",
                        help="also compare peak RSS of head-only runs over 1x and 4x the images")
    parser.add_argument("--feature-runtimes", action="store_true",
                        help="only compare the feature pass on Keras and on LiteRT")
    parser.add_argument("--hand-recipe", action="store_true",
                        help="only compare whole finetune processes with a hand-written Keras fit, and a rerun")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant with --feature-runtimes/--hand-recipe")
    args = parser.parse_args()
    if args.hand_recipe:
        hand_recipe(args.epochs or 5, args.repeats)
        return
    if args.feature_runtimes:
        feature_runtimes(args.repeats)
        return
    args.epochs = args.epochs or 3
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
