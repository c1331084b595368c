"""A user's journeys, each through the installed `mobilenet-zoo` console script, one process per step.

The units are tested elsewhere; these tests cross the seams between commands, where each step
reads what the one before wrote: the cache `fetch` fills, the OUT folder `finetune` writes, the
file `export` writes, the profile `bench` keeps. The model is the real v1 0.25/128 (its weights
recovered from the real upstream uint8 file, ``real_weights``) served as a tarball from a loopback
server; the photos are real (tests/data/SOURCES.md), the training data is scikit-learn's digits.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("sklearn")

from zoo.catalog import load_catalog  # noqa: E402

from . import real_weights  # noqa: E402
from .conftest import DATA, console_script  # noqa: E402
from .digits import write_digits  # noqa: E402
from .fetch_helpers import entry_served_at, write_catalog  # noqa: E402
from .test_classify import CAT_CLASSES  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.slow]

BASE = real_weights.CATALOG_ID
TABBY, CHICKADEE = "n02123045", "n01592084"  # the synsets of tests/data/cat.bmp and bird.bmp


def zoo_cli(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
    """One step of a journey: the console script in its own process, as a user's shell runs it."""
    result = subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "60"})
    if expect is not None:
        assert result.returncode == expect, f"mobilenet-zoo {' '.join(args)}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def as_json(*args: str) -> object:
    return json.loads(zoo_cli(*args, "--json").stdout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return real_weights.write_checkpoint(tmp_path_factory.mktemp("real_v1"))


@pytest.fixture
def served_catalog(fault_server, checkpoint, tmp_path) -> Path:
    """A catalog whose only model is the real-weight v1_0.25_128 tarball on the loopback server."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path in sorted(checkpoint.parent.iterdir()):
            tar.add(path, arcname=f"./{path.name}", recursive=False)
    data = raw.getvalue()
    entry = entry_served_at(load_catalog().get(BASE), fault_server.add(f"/m/{BASE}.tgz", data), data)
    entry["files"] = {"checkpoint": checkpoint.name}
    return write_catalog(tmp_path / "catalog.yaml", [entry])


@pytest.fixture(scope="module")
def imagenet_folders(tmp_path_factory) -> Path:
    """ImageNet-style validation folders (one synset folder per class) of the two real photos."""
    root = tmp_path_factory.mktemp("val")
    for synset, photo in ((TABBY, "cat.bmp"), (CHICKADEE, "bird.bmp")):
        (root / synset).mkdir()
        shutil.copy(DATA / photo, root / synset / photo)
    return root


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, Path]:
    """(training folders, held-out folders): three digit classes, disjoint images."""
    root = tmp_path_factory.mktemp("digits")
    train = write_digits(root / "train", limit=240, classes=(0, 1, 7))
    held_out = root / "held_out"
    write_digits(held_out, limit=480, classes=(0, 1, 7))
    for image in list(held_out.rglob("*.png")):
        if (train / image.parent.name / image.name).exists():
            image.unlink()  # the first 240 trained on; the rest are new to the model
    return train, held_out


def test_pick_fetch_restore_classify_eval_export_bench_pick_local(served_catalog, imagenet_folders, tmp_path):
    cat = ("--catalog", str(served_catalog))
    assert zoo_cli(*cat, "pick", "--max-macs", "20", "-q").stdout.strip() == BASE

    (fetched,) = as_json(*cat, "fetch", BASE)
    assert fetched["status"] == "fetched" and Path(fetched["path"]).is_dir()

    restored = as_json(*cat, "restore", BASE)  # the tarball has a checkpoint only: that is what loads
    assert (restored["id"], restored["format"], restored["output_shape"]) == (BASE, "ckpt", [None, 1001])

    classified = as_json(*cat, "classify", BASE, str(DATA / "cat.bmp"), "--top", "1")
    assert classified[0]["predictions"][0]["label"] in CAT_CLASSES

    evaluated = as_json(*cat, "eval", BASE, "--data", str(imagenet_folders))
    assert evaluated["images"] == 2 and evaluated["format"] == "ckpt" and evaluated["top5"] == 100.0

    exported = tmp_path / "exported.tflite"
    zoo_cli(*cat, "export", BASE, "--to", "tflite", "--out", str(exported))
    # the exported file is a model every running command takes, and it answers as the checkpoint did
    again = as_json(*cat, "eval", str(exported), "--data", str(imagenet_folders))
    assert (again["images"], again["format"], again["top5"]) == (2, "tflite", 100.0)
    assert as_json(*cat, "classify", str(exported), str(DATA / "cat.bmp"), "--top", "1")[0]["predictions"][0][
        "label"] == classified[0]["predictions"][0]["label"]

    (bench,) = as_json(*cat, "bench", BASE, "--runs", "2", "--warmup", "0")
    assert (bench["id"], bench["format"]) == (BASE, "ckpt") and bench["median_ms"] > 0
    local = zoo_cli(*cat, "pick", "--device", "local", "--max-latency-ms", "100000", "-q")
    assert local.stdout.strip() == BASE  # the latency `bench` measured is what `pick --device local` reads


def test_finetune_then_eval_export_and_bench_what_it_wrote(checkpoint, digits, tmp_path):
    """`eval` takes a fine-tuned OUT in each of its forms and scores it on the model's own classes."""
    train, held_out = digits
    out = tmp_path / "digits_model"
    result = as_json("finetune", BASE, "--checkpoint", str(checkpoint), "--data", str(train), "--out", str(out),
                     "--epochs", "3", "--learning-rate", "0.01", "--quantize", "int8")
    assert result["val_top1"] is not None and result["int8_top1"] is not None, result

    held = sum(1 for _ in held_out.rglob("*.png"))
    scores = {}
    for form in (out, out / "model.tflite", out / "model_int8.tflite"):
        scored = as_json("eval", str(form), "--data", str(held_out))
        assert scored["images"] == held, form
        scores[form.name] = scored["top1"]
    # a model that learned something, the same in float whichever file is given, int8 close to it
    assert scores[out.name] > 60.0
    assert abs(scores["model.tflite"] - scores[out.name]) <= 100.0 / held + 1e-9
    assert abs(scores["model_int8.tflite"] - scores["model.tflite"]) <= 10.0
    # the int8 file beside the Keras model it was converted from, on the same images
    side_by_side = as_json("eval", str(out / "model_int8.tflite"), "--compare", "ckpt", "--data", str(held_out))
    assert side_by_side["top1"] == scores["model_int8.tflite"]
    assert side_by_side["compared"]["format"] == "ckpt" and side_by_side["compared"]["images"] == held
    assert abs(side_by_side["compared"]["top1"] - scores["model.tflite"]) <= 100.0 / held + 1e-9
    assert side_by_side["top1_agreement"] >= 80.0

    # a folder of ImageNet synsets is the wrong data for this model: one clear error naming both
    imagenet = tmp_path / "imagenet"
    (imagenet / TABBY).mkdir(parents=True)
    shutil.copy(DATA / "cat.bmp", imagenet / TABBY / "cat.bmp")
    wrong = zoo_cli("eval", str(out), "--data", str(imagenet), expect=2)
    assert TABBY in wrong.stderr and "0, 1, 7" in wrong.stderr

    exported = tmp_path / "digits.tflite"
    zoo_cli("export", str(out), "--to", "tflite", "--quantize", "int8", "--calibration", str(train),
            "--out", str(exported))
    assert Path(str(exported) + ".zoo.json").is_file()  # the card: the file says which model it is
    rescored = as_json("eval", str(exported), "--data", str(held_out))
    assert rescored["images"] == held and abs(rescored["top1"] - scores["model_int8.tflite"]) <= 10.0
    (bench,) = as_json("bench", str(exported), "--runs", "2", "--warmup", "0")
    assert bench["format"] == "tflite" and bench["median_ms"] > 0

    # the fine-tuned model deployed on the other runtimes: exported from OUT, checked on its
    # training images, scored by eval on each runtime like the .tflite it came from
    import importlib.util

    if not (importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("openvino")):
        pytest.skip("onnxruntime and openvino are not both installed (the [onnx] and [openvino] extras)")
    for to, name, runtimes in (("onnx", "digits.onnx", ("onnxruntime", "openvino")),
                               ("openvino", "digits.xml", ("openvino",))):
        converted = as_json("export", str(out), "--to", to, "--calibration", str(train), "--out", str(tmp_path / name))
        assert converted["check"]["kind"] == "calibration" and converted["top1_agreement"] >= 99.0
        for runtime in runtimes:
            scored = as_json("eval", str(tmp_path / name), "--data", str(held_out), "--runtime", runtime)
            assert scored["runtime"] == runtime and scored["images"] == held
            assert abs(scored["top1"] - scores["model.tflite"]) <= 100.0 / held + 1e-9, (to, runtime)
    rows = as_json("bench", str(out), "--runtime", "all", "--runs", "2", "--warmup", "0")
    assert [r["runtime"] for r in rows] == ["litert", "onnxruntime", "openvino"]


def test_quantization_aware_finetune_then_eval_export_and_classify(checkpoint, digits, tmp_path):
    """`finetune --qat`: its int8 file scores as the network it trained, and `export` remakes that
    file from the model's own ranges (no calibration), so eval gives the same figure for both."""
    train, held_out = digits
    out = tmp_path / "qat_model"
    result = as_json("finetune", BASE, "--checkpoint", str(checkpoint), "--data", str(train), "--out", str(out),
                     "--epochs", "3", "--learning-rate", "0.01", "--quantize", "int8", "--qat")
    assert Path(result["int8_tflite"]).resolve() == (out / "model_int8.tflite").resolve() and result["int8_top1"] is not None
    assert json.loads((out / "finetune.json").read_text())["quantization"]["mode"] == "quantization-aware training"
    scores = {form.name: as_json("eval", str(form), "--data", str(held_out))["top1"]
              for form in (out, out / "model_int8.tflite")}
    assert scores[out.name] > 60.0 and abs(scores["model_int8.tflite"] - scores[out.name]) <= 10.0, scores

    exported = tmp_path / "qat_int8.tflite"
    done = zoo_cli("export", str(out), "--to", "tflite", "--quantize", "int8", "--out", str(exported))
    assert "own fake-quant ranges (no calibration)" in " ".join(done.stdout.split())
    assert as_json("eval", str(exported), "--data", str(held_out))["top1"] == scores["model_int8.tflite"]  # same file
    (top,) = as_json("classify", str(out), str(sorted((held_out / "7").iterdir())[0]), "--top", "1")
    assert top["predictions"][0]["label"] in ("0", "1", "7")
