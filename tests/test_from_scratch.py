"""`finetune --from-scratch`: a catalog architecture trained from random weights (``zoo.training.finetuning``).

Through the real console script, offline with an empty cache, so a run that tried to fetch the
published checkpoint would fail: from scratch needs the architecture only.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")
pytestmark = pytest.mark.tf

from zoo.catalog import load_catalog  # noqa: E402
from zoo.notices import ZooWarning  # noqa: E402
from zoo.training.finetuning import warn_small_scratch_set  # noqa: E402
from zoo.training.options import FROM_SCRATCH_ENOUGH_IMAGES  # noqa: E402
from zoo.training.resume import progress_dir  # noqa: E402

from . import real_weights  # noqa: E402
from .conftest import console_script  # noqa: E402
from .digits import write_digits  # noqa: E402
from .test_resume import _kill_when  # noqa: E402

MODEL = "v1_0.25_128"


@pytest.fixture(scope="session")
def few(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits_scratch") / "few", size=32, limit=200, classes=(0, 1, 7))


def _scratch(data, out, cache, *extra):
    return ["--offline", "--cache-dir", str(cache), "finetune", MODEL, "--from-scratch", "--data", str(data),
            "--out", str(out), "--batch-size", "8", *extra]


def _run(args):
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _batch_norm_means(out):
    import zoo

    keras_model = zoo.restore(out, "ckpt").keras_model
    return [np.asarray(layer.moving_mean) for layer in keras_model._flatten_layers()
            if type(layer).__name__ == "BatchNormalization"]


@pytest.mark.slow
def test_from_scratch_trains_every_layer_batch_norm_too_and_fetches_nothing(tmp_path, few):
    out, cache = tmp_path / "model", tmp_path / "empty_cache"
    proc = _run(_scratch(few, out, cache, "--epochs", "3", "--quantize", "int8"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{MODEL} from scratch on" in proc.stderr and "training images" in proc.stderr  # the data-size warning
    assert not any(cache.rglob("*.tgz")) and not any(cache.rglob("*.ckpt*"))  # nothing fetched
    manifest = json.loads((out / "finetune.json").read_text())
    training = manifest["training"]
    assert training["from_scratch"] is True and manifest["started_from"] == "random weights (seed 0)"
    assert [(h["phase"], h["epoch"]) for h in training["history"]] == [("scratch", n) for n in (1, 2, 3)]
    assert training["feature_extraction"] == []  # no frozen backbone to cache features of
    assert training["history"][-1]["loss"] < training["history"][0]["loss"]  # it learns
    assert manifest["quantization"]["head_trained_on"].startswith("float images (trained from scratch")
    # batch norm learned its statistics: Keras initialises every moving mean at 0
    means = _batch_norm_means(out)
    assert len(means) == 27 and all(np.abs(m).max() > 0 for m in means)
    for name in ("model.tflite", "model_int8.tflite", "model.keras", "labels.txt"):
        assert (out / name).is_file()


@pytest.mark.slow
def test_a_killed_from_scratch_run_resumes_at_its_next_epoch(tmp_path, few):
    out, cache = tmp_path / "model", tmp_path / "cache"
    args = _scratch(few, out, cache, "--epochs", "2")
    _kill_when(args, lambda seen: "scratch epoch 1/2:" in seen)
    assert not out.exists() and (progress_dir(out) / "state.json").is_file()
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming at scratch epoch 2/2" in proc.stderr and "scratch epoch 1/2" not in proc.stderr
    history = json.loads((out / "finetune.json").read_text())["training"]["history"]
    assert [(h["phase"], h["epoch"]) for h in history] == [("scratch", 1), ("scratch", 2)]
    assert not progress_dir(out).exists()


@pytest.mark.slow
def test_a_fine_tune_on_the_out_of_a_killed_from_scratch_run_starts_afresh_and_says_why(tmp_path, few):
    """from_scratch is part of a run's identity: a fine-tune must not carry on from random weights."""
    out, cache = tmp_path / "model", tmp_path / "cache"
    _kill_when(_scratch(few, out, cache, "--epochs", "2"), lambda seen: "scratch epoch 1/2:" in seen)
    prefix = real_weights.write_checkpoint(tmp_path / "ckpt")
    proc = _run(["--cache-dir", str(cache), "finetune", MODEL, "--checkpoint", str(prefix), "--data", str(few),
                 "--out", str(out), "--epochs", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not resuming" in proc.stderr and "from_scratch True -> False" in proc.stderr
    history = json.loads((out / "finetune.json").read_text())["training"]["history"]
    assert [(h["phase"], h["epoch"]) for h in history] == [("head", 1)]


@pytest.mark.parametrize("case", ["checkpoint", "qat", "quant_model", "local_weights"])
def test_from_scratch_refuses_what_names_weights_with_one_clear_message(cli, tmp_path, case):
    data = write_digits(tmp_path / "d", size=8, limit=40, classes=(0, 1))
    prefix = real_weights.write_checkpoint(tmp_path / "ckpt")
    model, extra = MODEL, []
    if case == "checkpoint":
        extra = ["--checkpoint", str(prefix)]
    elif case == "qat":
        extra = ["--quantize", "int8", "--qat"]
    elif case == "quant_model":
        model = MODEL + "_quant"
    elif case == "local_weights":
        model = str(prefix)
    out = tmp_path / "never"
    code, stdout, stderr = cli("--offline", "finetune", model, "--from-scratch", "--data", str(data),
                               "--out", str(out), *extra)
    expected = {"checkpoint": "cannot be combined with --checkpoint", "qat": "cannot be combined with --qat",
                "quant_model": f"cannot be combined with the _quant model {MODEL}_quant",
                "local_weights": "names trained weights"}[case]
    assert code == 2 and expected in stderr and "--from-scratch" in stderr, stderr
    assert "Traceback" not in stderr and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_the_data_size_warning_names_the_model_and_stops_at_the_threshold():
    entry = load_catalog().get(MODEL)
    with pytest.warns(ZooWarning, match=rf"{MODEL} from scratch on 480 training images"):
        warn_small_scratch_set(entry, 480)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_small_scratch_set(entry, FROM_SCRATCH_ENOUGH_IMAGES)
