"""Restore time and single-image latency of every format, in one run.

    python benchmarks/bench_runtimes.py [--runs 30]

No real upstream checkpoint is reachable offline, so full-size v1 1.0_224 and v2 1.4_224
models are built with upstream's exact variable names and random weights
(tests/slim_builders.py); speed does not depend on the weights' values.

1. Restore time of the checkpoints into Keras, excluding the TensorFlow import (median of 3).
2. Latency of the same v1 1.0_224 model as Keras (ckpt), frozen graph and TFLite (float),
   and TFLite with 1 and 2 threads; plus the real quantized upstream TFLite files shipped
   with the tests (or in ../shared/realdata when present).
Ratios are against TFLite with 1 thread measured in the same run.
3. Every installed runtime (LiteRT, ONNX Runtime on the tf2onnx conversion, OpenVINO reading
   the .tflite) on the same files, float (the v1 1.0_224 above) and uint8 (the real files), at
   1 and 2 threads, each as a ratio to LiteRT with the same threads, with max |dp| against
   LiteRT on 4 fixed images; OpenVINO also at bf16 (its default on a CPU with bf16 units,
   which `--runtime openvino` only uses when `--precision bf16` asks).
   `--only-runtimes` runs section 3 alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--only-runtimes", action="store_true", help="section 3 only")
    args = ap.parse_args()

    import tensorflow as tf  # noqa: F401 - imported up front: restore times exclude it

    from tests import slim_builders
    from zoo.run.benchmark import bench_image, summarize, time_calls
    from zoo.catalog import load_catalog
    from zoo.formats import restore, restore_file

    catalog = load_catalog(with_profile=False)
    work = Path(tempfile.mkdtemp(prefix="bench-runtimes-"))
    print("building full-size upstream-shaped models (random weights) ...", flush=True)
    v1 = slim_builders.write_v1_model(work / "v1", width=1.0, resolution=224)
    real_dir = REPO.parent / "shared" / "realdata"
    real = [(p, p.name[len("mobilenet_"):-len(".tflite")]) for p in sorted(real_dir.glob("*.tflite"))] \
        if real_dir.is_dir() else [(REPO / "tests" / "data" / "mobilenet_v1_0.25_128_quant.tflite", "v1_0.25_128_quant")]
    runtime_files = [(v1.tflite, v1.entry, "v1_1.0_224 float")] \
        + [(path, catalog.get(model_id), f"{model_id} uint8") for path, model_id in real]
    if args.only_runtimes:
        runtimes_table(runtime_files, args.runs)
        return
    built = {"v1_1.0_224": v1, "v2_1.4_224": slim_builders.write_v2_model(work / "v2", width=1.4, resolution=224)}

    print("\n1. checkpoint restore into Keras (TensorFlow already imported), median of 3")
    keras_models = {}
    for model_id, model in built.items():
        entry = model.entry
        times = []
        for _ in range(3):
            start = time.perf_counter()
            restored = restore(model.directory, "ckpt", entry=entry)
            times.append(time.perf_counter() - start)
        keras_models[model_id] = restored
        print(f"   {model_id}: {statistics.median(times):.2f} s "
              f"({restored.summary()['parameters'] / 1e6:.2f} M parameters, catalog {catalog.get(model_id).params_m} M)")

    print(f"\n2. single-image latency, {args.runs} runs after 5 warm-up, median / p90 ms")
    image = bench_image(v1.entry.input_size)
    rows = []
    candidates = [
        ("v1_1.0_224 tflite float, 1 thread", lambda: restore(v1.directory, "tflite", entry=v1.entry, threads=1)),
        ("v1_1.0_224 tflite float, 2 threads", lambda: restore(v1.directory, "tflite", entry=v1.entry, threads=2)),
        ("v1_1.0_224 frozen graph (TF)", lambda: restore(v1.directory, "frozen", entry=v1.entry)),
        ("v1_1.0_224 ckpt (Keras)", lambda: keras_models["v1_1.0_224"]),
    ]
    for path, model_id in real:
        entry = catalog.get(model_id)
        for threads in (1, 2):
            candidates.append((f"{model_id} real upstream tflite uint8, {threads} thread(s)",
                               lambda e=entry, p=path, t=threads: restore_file(e, p, "tflite", threads=t)))
    for label, make in candidates:
        model = make()
        img = image if model.entry.input_size == v1.entry.input_size else bench_image(model.entry.input_size)
        median, p90 = summarize(time_calls(model, img, args.runs, 5))
        rows.append((label, median, p90))
    base = rows[0][1]
    for label, median, p90 in rows:
        print(f"   {label:55s} {median:8.2f} / {p90:8.2f}   x{median / base:5.2f} of tflite 1 thread")

    runtimes_table(runtime_files, args.runs)


def runtimes_table(files, runs: int) -> None:
    """Section 3: each runtime's median as a ratio to LiteRT on the same file and threads."""
    import numpy as np

    from zoo.formats import restore_file
    from zoo.run.benchmark import bench_image, installed_runtimes, summarize, time_calls

    others = [r for r in installed_runtimes() if r in ("onnxruntime", "openvino")]
    print(f"\n3. runtimes on the same .tflite ({', '.join(['litert'] + others)}), median ms, ratio to LiteRT "
          "with the same threads, max |dp| vs LiteRT")
    for path, entry, label in files:
        check = np.concatenate([bench_image(entry.input_size, seed) for seed in range(4)])
        image = bench_image(entry.input_size)
        for threads in (1, 2):
            base = None
            reference = None
            for runtime, precision in [("litert", None)] + [(r, None) for r in others] \
                    + ([("openvino", "bf16")] if "openvino" in others else []):
                options = {"precision": precision} if precision else {}
                model = restore_file(entry, path, "tflite", threads=threads, runtime=runtime, **options)
                median, _ = summarize(time_calls(model, image, runs, 5))
                answers = model(check)
                if base is None:
                    base, reference = median, answers
                dp = float(np.abs(answers - reference).max())
                name = runtime + (f" {precision}" if precision else "")
                print(f"   {label:28s} {threads}t {name:16s} {median:8.2f} ms  x{median / base:5.2f}  "
                      f"max|dp| {dp:.2g}")


if __name__ == "__main__":
    main()
