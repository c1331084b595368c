"""`eval` against a plain hand-written loop over the same JPEGs, as whole processes, in one run.

    python benchmarks/bench_eval.py [--images 300] [--repeats 3] [--formats] [--memory 50000]
                                    [--runtime litert|onnxruntime|openvino]

The images: a few hundred JPEGs made from the project's real photos (cat, bird and, when
../shared/realdata is there, dragonfly) by random crops, mirror flips, rescaling (long
side 320-640 px, like ImageNet's) and JPEG quality 80-95; they sit in ILSVRC synset
folders labelled with what each photo shows.

The baseline is what a user writes by hand: one loop that decodes with Pillow, crops the
central 87.5%, resizes with Pillow, runs LiteRT with 2 threads and counts top-1 hits,
one image after the other. Against it: ``mobilenet-zoo eval MODEL --data DIR --runtime
litert --threads 2``. ``--runtime onnxruntime|openvino`` puts both sides on that runtime: the
loop calls its own API (2 threads; OpenVINO at f32 reading the .tflite; ONNX Runtime on the
.onnx that `export --to onnx` wrote first, which eval then runs too). Both are timed as whole processes (start-up included), alternating,
and the median of ``--repeats`` runs is reported, with the ratio eval / loop. The project is
byte-compiled first (as an install does), so neither side compiles source while timed.

``--memory N`` runs ``eval --json`` (v1 0.25_128, the fastest model) over 1,000 images and
over N (hard links to the same JPEGs, spread over 1000 synset folders like ImageNet's
validation set) and reports each process's peak resident memory: a streaming eval
stays flat.

``--formats`` also measures images/s of every format in-process (model restored first, not
timed): a full-size v1 1.0_224 tarball with random weights (tests/slim_builders.py) as
ckpt, frozen and float tflite; speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import compile_project, console_script  # noqa: E402

SYNSETS = {"cat": "n02123045", "bird": "n01592084", "dragonfly": "n02268443"}  # tabby, chickadee, dragonfly

LOOP = textwrap.dedent('''
    """The hand-written baseline: Pillow decode + crop + resize, LiteRT invoke, in sequence."""
    import sys
    from pathlib import Path

    import numpy as np
    from PIL import Image

    model, root, synsets = sys.argv[1], Path(sys.argv[2]), sorted(open(sys.argv[3]).read().split())
    runtime = sys.argv[4] if len(sys.argv) > 4 else "litert"
    if runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=model, num_threads=2)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        _, height, width, _ = inp["shape"]
        is_uint8 = inp["dtype"] == np.uint8

        def run(x):
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(out["index"])[0]
    elif runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        first = session.get_inputs()[0]
        _, height, width, _ = first.shape
        is_uint8 = first.type == "tensor(uint8)"

        def run(x):
            return session.run(None, {first.name: x})[0][0]
    else:
        import openvino as ov

        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": "2",
                                                          "INFERENCE_PRECISION_HINT": "f32"})
        _, height, width, _ = list(compiled.inputs[0].get_shape())
        is_uint8 = compiled.inputs[0].get_element_type().get_type_name() == "u8"
        request = compiled.create_infer_request()

        def run(x):
            return request.infer({0: x})[compiled.outputs[0]][0]
    correct = total = 0
    for folder in sorted(root.iterdir()):
        label = synsets.index(folder.name) + 1
        for path in sorted(folder.iterdir()):
            img = Image.open(path).convert("RGB")
            w, h = img.size
            left, top = int(w * 0.0625), int(h * 0.0625)
            img = img.crop((left, top, w - left, h - top)).resize((width, height), Image.BILINEAR)
            x = np.asarray(img)[None]
            if not is_uint8:
                x = (x / 127.5 - 1.0).astype(np.float32)
            correct += int(np.argmax(run(x)) == label)
            total += 1
    print(total, correct)
''')


def realdata_dir(given: str | None) -> Path | None:
    for candidate in ([Path(given)] if given else []) + [REPO.parent / "shared" / "realdata",
                                                         REPO.parent.parent / "shared" / "realdata"]:
        if candidate.is_dir():
            return candidate
    return None


def make_images(out: Path, count: int, realdata: Path | None, seed: int = 0) -> int:
    """``count`` augmented JPEGs of the real photos, in synset folders."""
    import numpy as np
    from PIL import Image

    photos = {"cat": REPO / "tests" / "data" / "cat.bmp", "bird": REPO / "tests" / "data" / "bird.bmp"}
    if realdata is not None and (realdata / "dragonfly.bmp").exists():
        photos["dragonfly"] = realdata / "dragonfly.bmp"
    rng = np.random.default_rng(seed)
    sources = {name: Image.open(path).convert("RGB") for name, path in photos.items()}
    names = sorted(sources)
    for i in range(count):
        name = names[i % len(names)]
        img = sources[name]
        w, h = img.size
        keep = rng.uniform(0.6, 1.0)
        cw, ch = int(w * keep), int(h * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        variant = img.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            variant = variant.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = rng.uniform(320, 640) / max(variant.size)
        variant = variant.resize((max(1, int(variant.size[0] * scale)), max(1, int(variant.size[1] * scale))),
                                 Image.Resampling.BICUBIC)
        folder = out / SYNSETS[name]
        folder.mkdir(parents=True, exist_ok=True)
        variant.save(folder / f"{name}_{i:04d}.JPEG", quality=int(rng.integers(80, 96)))
    return count


def compare_with_loop(model: Path, data: Path, repeats: int, runtime: str = "litert") -> dict:
    """Median wall seconds of both processes, run alternately, on ``runtime`` (for onnxruntime,
    ``model`` is an .onnx file both sides run)."""
    script = data.parent / "loop.py"
    script.write_text(LOOP)
    synsets = REPO / "zoo" / "data" / "imagenet_synsets.txt"
    zoo_cmd = [console_script(), "eval", str(model), "--data", str(data), "--runtime", runtime,
               "--threads", "2", "--json"]
    loop_cmd = [sys.executable, str(script), str(model), str(data), str(synsets), runtime]
    env = dict(os.environ, MOBILENET_ZOO_CACHE=str(data.parent / "cache"))
    times = {"loop": [], "eval": []}
    outputs = {}
    for _ in range(repeats):
        for name, cmd in (("loop", loop_cmd), ("eval", zoo_cmd)):
            start = time.perf_counter()
            done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            times[name].append(time.perf_counter() - start)
            outputs[name] = done.stdout
    images, loop_correct = (int(v) for v in outputs["loop"].split())
    result = json.loads(outputs["eval"])
    loop_s, eval_s = statistics.median(times["loop"]), statistics.median(times["eval"])
    return {"model": model.name, "images": images, "loop_s": loop_s, "eval_s": eval_s,
            "ratio": eval_s / loop_s, "loop_images_per_s": images / loop_s,
            "eval_images_per_s_process": images / eval_s, "eval_images_per_s_loop_only": result["images_per_s"],
            "loop_top1": 100.0 * loop_correct / images, "eval_top1": result["top1"]}


def peak_memory(data: Path, work: Path, counts: list[int]) -> list[tuple[int, float, float]]:
    """(images, peak RSS in MB, seconds) of one ``eval`` process per count, over hard links to ``data``."""
    jpegs = sorted(data.rglob("*.JPEG"))
    synsets = (REPO / "zoo" / "data" / "imagenet_synsets.txt").read_text().split()
    rows = []
    for count in counts:
        root = work / f"links_{count}"
        for i in range(count):  # ImageNet's validation set: 50 images in each of 1000 folders
            folder = root / synsets[i % len(synsets)]
            folder.mkdir(parents=True, exist_ok=True)
            os.link(jpegs[i % len(jpegs)], folder / f"ILSVRC2012_val_{i:08d}.JPEG")
        script = ("import resource, subprocess, sys, time; start = time.perf_counter(); "
                  "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
                  "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - start)")
        cmd = [sys.executable, "-c", script, console_script(), "eval",
               str(REPO / "tests" / "data" / "mobilenet_v1_0.25_128_quant.tflite"), "--data", str(root), "--json"]
        kilobytes, seconds = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
        rows.append((count, int(kilobytes) / 1024, float(seconds)))
    return rows


def formats_speed(data: Path, work: Path) -> list[dict]:
    """images/s per format on a full-size v1 1.0_224 (random weights), restored in-process first."""
    import tensorflow as tf  # noqa: F401

    from tests import slim_builders
    from zoo.catalog import load_catalog
    from zoo.run.evaluation import evaluate
    from zoo.formats import restore_file

    real = load_catalog(with_profile=False).get("v1_1.0_224")
    built = slim_builders.write_v1_model(work / "v1_full", width=1.0, resolution=224)
    entry = built.entry.__class__(**{**built.entry.__dict__, "top1": real.top1, "top5": real.top5})
    rows = []
    for fmt, path, batch in (("tflite", built.tflite, 1), ("frozen", built.frozen_graph, 32),
                             ("ckpt", built.checkpoint, 32)):
        model = restore_file(entry, path, fmt, threads=2)
        result = evaluate(model, data, batch_size=batch)
        rows.append({"format": fmt, "batch": batch, "images": result.images, "images_per_s": result.images_per_s})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--realdata", help="folder with the real photos and models (default: ../shared/realdata)")
    ap.add_argument("--formats", action="store_true", help="also images/s of ckpt, frozen and tflite")
    ap.add_argument("--memory", type=int, metavar="N", help="also peak memory of eval over 1,000 and N images")
    ap.add_argument("--runtime", default="litert", choices=("litert", "onnxruntime", "openvino"),
                    help="the runtime of both sides (onnxruntime: the models are exported to .onnx first)")
    args = ap.parse_args()
    if console_script() is None:
        sys.exit("install the project first (pip install -e '.[tf]')")
    compile_project()
    realdata = realdata_dir(args.realdata)
    models = [REPO / "tests" / "data" / "mobilenet_v1_0.25_128_quant.tflite"]
    if realdata is not None and (realdata / "mobilenet_v2_1.0_224_quant.tflite").exists():
        models.append(realdata / "mobilenet_v2_1.0_224_quant.tflite")
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        data = Path(tmp) / "val"
        count = make_images(data, args.images, realdata)
        print(f"{count} augmented JPEGs of {'3' if realdata else '2'} real photos in {data}; "
              f"median of {args.repeats} alternating runs of each process; {os.cpu_count()} CPUs")
        print(f"{'model':40} {'loop s':>8} {'eval s':>8} {'ratio':>6} {'loop img/s':>11} {'eval img/s':>11}"
              f" {'(in loop)':>10} {'top-1 loop/eval':>16}")
        for model in models:
            if args.runtime == "onnxruntime":  # both sides run the same exported file
                onnx = Path(tmp) / (model.stem + ".onnx")
                subprocess.run([console_script(), "export", str(model), "--to", "onnx", "--out", str(onnx)],
                               check=True, capture_output=True)
                model = onnx
            r = compare_with_loop(model, data, args.repeats, args.runtime)
            print(f"{r['model']:40} {r['loop_s']:8.2f} {r['eval_s']:8.2f} {r['ratio']:6.2f} "
                  f"{r['loop_images_per_s']:11.1f} {r['eval_images_per_s_process']:11.1f} "
                  f"{r['eval_images_per_s_loop_only']:10.1f} {r['loop_top1']:7.1f}/{r['eval_top1']:.1f}")
        if args.memory:
            print("\npeak memory of one eval process (v1 0.25_128 quant, hard links to the JPEGs above):")
            for count, megabytes, seconds in peak_memory(data, Path(tmp), [1000, args.memory]):
                print(f"  {count:7d} images  {megabytes:6.1f} MB  {seconds:6.1f} s")
        if args.formats:
            print("\nimages/s per format, v1 1.0_224 (random weights), 2 threads, model restored first:")
            for row in formats_speed(data, Path(tmp)):
                print(f"  {row['format']:7} batch {row['batch']:3}  {row['images_per_s']:7.1f} images/s")


if __name__ == "__main__":
    main()
