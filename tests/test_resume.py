"""A killed `finetune` resumes (``zoo.training.resume``): SIGKILL through the real console script at
every stage, reruns that carry on and write what an uninterrupted run writes, and a progress folder
treated as untrusted input.

Data and weights as in ``test_finetune``: real digit scans, the real v1 0.25_128 weights.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from zoo.errors import UsageError
from zoo.training.inputs import ImageFolder
from zoo.training.publish import remove_dead_leftovers, staging_path
from zoo.training.resume import Progress, SavedEpoch, progress_dir, run_identity

from .conftest import console_script

BASE = "v1_0.25_128"


# ----------------------------------------------------------------------------- the folder, untrusted
@pytest.fixture
def listing(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "1.png").write_bytes(b"x")
    folder = ImageFolder(root, ("a", "b"), (str(root / "a/1.png"), str(root / "b/1.png")), (0, 1))
    weights = tmp_path / "ckpt" / "model.ckpt"
    weights.parent.mkdir()
    weights.with_suffix(".ckpt.index").write_bytes(b"i")
    return folder, weights


def _identity(listing, **options):
    folder, weights = listing
    return run_identity(model=BASE, weights=weights, train=folder, val=folder,
                        options={"epochs": 4, "seed": 0, **options})


def _saved(n=1):
    arrays = [np.full((2, 3), n, np.float32), np.arange(3, dtype=np.float32)]
    return SavedEpoch(phase=0, epoch=n, history=[{"epoch": n}], best_score=0.5, best_epoch=n, feature_passes=[],
                      weights=arrays, best_weights=arrays, optimizer=[np.array(n, np.int64)])


def _saved_folder(tmp_path, listing):
    out = tmp_path / "out"
    progress = Progress.open(out, _identity(listing))
    progress.save_epoch(_saved(1))
    progress.close()
    return out, progress_dir(out)


def test_a_saved_epoch_is_read_back_and_only_its_files_are_kept(tmp_path, listing):
    out = tmp_path / "out"
    progress = Progress.open(out, _identity(listing))
    assert progress.saved is None and progress.why is None
    progress.save_epoch(_saved(1))
    progress.save_epoch(_saved(2))
    progress.close()
    folder = progress_dir(out)
    assert sorted(p.name for p in folder.iterdir()) == ["best-2.npz", "optimizer-2.npz", "state.json",
                                                       "weights-2.npz"]  # the lock goes with its holder
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    again = Progress.open(out, _identity(listing))
    assert again.saved.epoch == 2 and np.array_equal(again.saved.weights[0], np.full((2, 3), 2))
    assert again.saved.optimizer[0] == 2
    again.remove()
    assert not folder.exists()


def test_changed_options_or_data_start_afresh_and_say_why(tmp_path, listing):
    out, folder = _saved_folder(tmp_path, listing)
    progress = Progress.open(out, _identity(listing, epochs=5))
    assert progress.saved is None and "epochs 4 -> 5" in progress.why
    assert not list(folder.glob("*.npz"))
    progress.close()
    _saved_folder(tmp_path, listing)
    data = listing[0]
    os.utime(data.files[0], ns=(1, 1))  # the same name, another file as far as a rerun can tell
    progress = Progress.open(out, _identity(listing))
    assert progress.saved is None and "the training images changed" in progress.why
    progress.close()


def test_restart_discards_the_saved_progress(tmp_path, listing):
    out, folder = _saved_folder(tmp_path, listing)
    progress = Progress.open(out, _identity(listing), restart=True)
    assert progress.saved is None and "discarded" in progress.why and not list(folder.glob("*.npz"))
    progress.close()


def test_a_second_run_on_the_same_out_is_refused_while_the_first_holds_it(tmp_path, listing):
    out = tmp_path / "out"
    first = Progress.open(out, _identity(listing))
    with pytest.raises(UsageError, match="another finetune .*pid"):
        Progress.open(out, _identity(listing))
    first.close()
    Progress.open(out, _identity(listing)).close()


def _plant_symlink(tmp_path, out):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    progress_dir(out).symlink_to(victim)
    return victim


def _torn_state(tmp_path, out):
    (progress_dir(out) / "state.json").write_text('{"kind": "mobilenet-zoo finetune progress", "vers')


def _escaping_file_name(tmp_path, out):
    state_path = progress_dir(out) / "state.json"
    state = json.loads(state_path.read_text())
    state["files"]["weights"] = "../../victim.npz"
    state_path.write_text(json.dumps(state))


def _weights_as_a_link(tmp_path, out):
    folder = progress_dir(out)
    target = tmp_path / "elsewhere.npz"
    shutil.copy(folder / "weights-1.npz", target)
    (folder / "weights-1.npz").unlink()
    (folder / "weights-1.npz").symlink_to(target)


def _pickled_weights(tmp_path, out):
    folder = progress_dir(out)
    (folder / "weights-1.npz").unlink()
    with open(folder / "weights-1.npz", "wb") as fh:
        np.savez(fh, np.array([{"evil": 1}], dtype=object))


def _truncated_weights(tmp_path, out):
    path = progress_dir(out) / "weights-1.npz"
    path.write_bytes(path.read_bytes()[:50])


def _world_writable(tmp_path, out):
    progress_dir(out).chmod(0o777)


def _not_a_folder(tmp_path, out):
    shutil.rmtree(progress_dir(out))
    progress_dir(out).write_text("a file")


def _lock_as_a_link(tmp_path, out):
    target = tmp_path / "precious-file"
    target.write_text("keep")
    lock = progress_dir(out) / "lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)


def _other_users_folder(tmp_path, out):
    if os.geteuid() != 0:
        pytest.skip("making a folder of another user needs root")
    os.chown(progress_dir(out), 65534, 65534)


def _other_users_state(tmp_path, out):
    if os.geteuid() != 0:
        pytest.skip("making a file of another user needs root")
    os.chown(progress_dir(out) / "state.json", 65534, 65534)


HOSTILE = {"symlinked folder": (_plant_symlink, "symbolic link"),
           "torn state": (_torn_state, "state.json .*not valid JSON"),
           "file name escaping the folder": (_escaping_file_name, "never writes"),
           "weights as a link": (_weights_as_a_link, "weights-1.npz cannot be read"),
           "pickled weights": (_pickled_weights, "weights-1.npz"),
           "truncated weights": (_truncated_weights, "weights-1.npz cannot be read"),
           "world-writable folder": (_world_writable, "others may write"),
           "a file, not a folder": (_not_a_folder, "not a folder"),
           "lock file as a link": (_lock_as_a_link, "symbolic link"),
           "another user's folder": (_other_users_folder, "another user"),
           "another user's state file": (_other_users_state, "another user")}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_progress_folder_is_refused_by_name_and_nothing_outside_is_touched(tmp_path, listing, case):
    out, folder = _saved_folder(tmp_path, listing)
    if case in ("symlinked folder",):
        shutil.rmtree(folder)
    plant, message = HOSTILE[case]
    planted = plant(tmp_path, out)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()
              and ".progress" not in str(p)}
    with pytest.raises(UsageError, match=message) as caught:
        Progress.open(out, _identity(listing))
    assert str(folder) in caught.value.message
    after = {p: p.read_bytes() for p in before}
    assert after == before and not out.exists()
    if planted is not None:
        assert (planted / "precious").read_text() == "keep" and len(list(planted.iterdir())) == 1


def test_a_damaged_state_is_overcome_with_restart(tmp_path, listing):
    out, folder = _saved_folder(tmp_path, listing)
    _torn_state(tmp_path, out)
    with pytest.raises(UsageError) as caught:
        Progress.open(out, _identity(listing))
    assert caught.value.params == ("restart",)
    Progress.open(out, _identity(listing), restart=True).close()


def test_leftovers_of_dead_runs_are_removed_and_live_or_foreign_ones_kept(tmp_path):
    target = tmp_path / "model"
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = staging_path(target)
    leftover = Path(str(mine).replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
    leftover.mkdir()
    (leftover / "model.tflite").write_bytes(b"half")
    mine.mkdir()                                                       # this process: alive
    foreign = tmp_path / f".model.staging-otherhost-{dead.pid}-1"      # another machine's: never ours to judge
    foreign.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("keep")
    link = Path(str(leftover) + "9")
    link.symlink_to(victim)                                           # a dead run's name, but a link
    unrelated = tmp_path / ".other.staging-x-1-1"
    unrelated.mkdir()
    removed = remove_dead_leftovers(target)
    assert sorted(removed) == sorted([leftover, link])
    assert mine.is_dir() and foreign.is_dir() and unrelated.is_dir() and (victim / "keep").read_text() == "keep"


# ----------------------------------------------------------------------------- SIGKILL, real runs
tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("sklearn")

from . import real_weights  # noqa: E402
from .digits import write_digits  # noqa: E402


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    return real_weights.write_checkpoint(tmp_path_factory.mktemp("real_v1_resume"))


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """1797 real scans: a feature pass long enough (seconds) to be killed half-way."""
    return write_digits(tmp_path_factory.mktemp("digits_resume") / "all", size=32)


@pytest.fixture(scope="session")
def few(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits_resume") / "few", size=32, limit=200, classes=(0, 1, 7))


def _args(checkpoint, data, out, *extra):
    return ["finetune", BASE, "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), *extra]


def _env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _run(args, **env):
    proc = subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=900, env=_env(**env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr + proc.stdout


def _kill_when(args, ready, timeout=600, **env):
    """Start the command and SIGKILL it as soon as ``ready(stderr so far)`` is true."""
    import threading

    proc = subprocess.Popen([console_script(), *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=_env(**env))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while not ready("".join(lines)):
            assert proc.poll() is None, "finished before it could be killed:\n" + "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return "".join(lines)


def _manifest(out):
    return json.loads((out / "finetune.json").read_text())


# The feature pass on LiteRT (the runtime `auto` picks for long passes): a resumed pass must fill its
# rows from the same runtime as an uninterrupted one, or the bytes differ.
HEAD_RUN = ("--epochs", "4", "--feature-runtime", "litert")


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, checkpoint, digits):
    home = tmp_path_factory.mktemp("uninterrupted")
    out = home / "model"
    _run(_args(checkpoint, digits, out, *HEAD_RUN), MOBILENET_ZOO_CACHE=str(home / "cache"))  # its own cache
    return out


def _same_as_uninterrupted(out, uninterrupted):
    assert not progress_dir(out).exists()
    ours, theirs = _manifest(out), _manifest(uninterrupted)
    assert [(h["epoch"], h["loss"], h["val_accuracy"]) for h in ours["training"]["history"]] == \
        [(h["epoch"], h["loss"], h["val_accuracy"]) for h in theirs["training"]["history"]]
    assert ours["metrics"]["tflite_top1"] == theirs["metrics"]["tflite_top1"]
    assert (out / "model.tflite").read_bytes() == (uninterrupted / "model.tflite").read_bytes()


@pytest.mark.slow
def test_killed_during_a_head_epoch_resumes_there_and_writes_what_an_uninterrupted_run_writes(
        tmp_path, checkpoint, digits, uninterrupted):
    out = tmp_path / "model"
    args = _args(checkpoint, digits, out, *HEAD_RUN)
    _kill_when(args, lambda seen: "head epoch 2/4:" in seen)
    assert not out.exists() and (progress_dir(out) / "state.json").is_file()
    stderr = _run(args)
    assert "resuming at head epoch 3/4" in stderr and "the backbone did not run" in stderr
    assert "head epoch 1/4" not in stderr and "head epoch 2/4" not in stderr
    passes = _manifest(out)["training"]["feature_extraction"]
    assert len(passes) == 1  # the killed run's pass; the rerun sent no image through the backbone
    _same_as_uninterrupted(out, uninterrupted)


@pytest.mark.slow
def test_killed_during_the_feature_pass_carries_on_from_the_rows_on_disk(tmp_path, checkpoint, digits, uninterrupted):
    out = tmp_path / "model"
    args = _args(checkpoint, digits, out, *HEAD_RUN)
    sets = Path(os.environ["MOBILENET_ZOO_CACHE"]) / ".features"
    rows = lambda: list(sets.glob("*/features.rows.json"))  # noqa: E731
    _kill_when(args, lambda seen: rows())
    (marker,) = rows()
    on_disk = json.loads(marker.read_text())["rows"]
    assert 0 < on_disk < 2876
    stderr = _run(args)
    assert f"{on_disk} of the 3235 images' features were already on disk" in stderr
    (record,) = _manifest(out)["training"]["feature_extraction"]
    assert record["computed"] == 3235 - on_disk  # counted: fewer images through the backbone than a fresh run
    assert record["runtime"] == "litert" and record["max_abs_feature_diff"] <= 1e-3
    _same_as_uninterrupted(out, uninterrupted)


@pytest.mark.slow
def test_killed_while_converting_the_backbone_leaves_nothing_in_the_temporary_folder(
        tmp_path, checkpoint, digits, uninterrupted):
    out, scratch = tmp_path / "model", tmp_path / "tmp"
    scratch.mkdir()
    args = _args(checkpoint, digits, out, *HEAD_RUN)
    converting = progress_dir(out) / "work" / "head_float"
    _kill_when(args, lambda seen: converting.is_dir(), TMPDIR=str(scratch))
    assert not [p for p in scratch.iterdir() if p.name.startswith("mobilenet-zoo")]  # it converts beside OUT
    _run(args, TMPDIR=str(scratch))
    (record,) = _manifest(out)["training"]["feature_extraction"]
    assert record["runtime"] == "litert"
    _same_as_uninterrupted(out, uninterrupted)  # the progress folder, and its work/, gone too


@pytest.mark.slow
def test_killed_during_a_backbone_epoch_resumes_at_the_next_one(tmp_path, checkpoint, few):
    out = tmp_path / "model"
    args = _args(checkpoint, few, out, "--epochs", "2", "--train-backbone", "--batch-size", "8")
    _kill_when(args, lambda seen: "backbone epoch 1/2:" in seen)
    stderr = _run(args)
    assert "resuming at backbone epoch 2/2" in stderr and "backbone epoch 1/2" not in stderr
    training = _manifest(out)["training"]
    assert [(h["phase"], h["epoch"]) for h in training["history"]] == [
        ("head", 1), ("head", 2), ("backbone", 1), ("backbone", 2)]
    assert training["resumed"]["phase"] == "backbone"
    assert (out / "model.tflite").is_file() and not progress_dir(out).exists()


@pytest.mark.slow
def test_a_killed_quantization_aware_run_resumes_with_its_learned_ranges(tmp_path, checkpoint, few):
    """The fake-quant ranges are training state: the saved epoch holds them as they were after it
    (each activation range counts its updates: the calibration batches, then one per step), and
    the resumed run goes on from there."""
    import zoo
    from zoo.formats.fake_quant import fake_quant_layers

    out = tmp_path / "model"
    args = _args(checkpoint, few, out, "--epochs", "2", "--train-backbone", "--batch-size", "8",
                 "--quantize", "int8", "--qat")
    _kill_when(args, lambda seen: "backbone epoch 1/2:" in seen)
    state = json.loads((progress_dir(out) / "state.json").read_text())
    assert (state["phase"], state["epoch"]) == (1, 1)
    with np.load(progress_dir(out) / state["files"]["weights"]) as saved:
        counters = {float(saved[name]) for name in saved.files if saved[name].shape == ()}
    stderr = _run(args)
    assert "resuming at backbone epoch 2/2" in stderr and "backbone epoch 1/2" not in stderr
    manifest = _manifest(out)
    assert manifest["quantization"]["mode"] == "quantization-aware training"
    train = manifest["data"]["train_images"]
    calibration_batches, steps = -(-min(train, 200) // 32), -(-train // 8)
    assert calibration_batches + steps in counters  # after backbone epoch 1, before the kill
    model = zoo.restore(out, "ckpt").keras_model
    relu = {layer.name: layer for layer in fake_quant_layers(model)}["conv_pw_13_relu"]
    # the published weights are the best epoch's: the head's (calibration only) or a backbone epoch's
    assert float(relu.output_updates.numpy()) in {calibration_batches + n * steps for n in (0, 1, 2)}


@pytest.mark.slow
def test_killed_while_writing_out_never_publishes_half_and_the_rerun_only_writes(tmp_path, checkpoint, few):
    out = tmp_path / "model"
    args = _args(checkpoint, few, out, "--epochs", "1", "--quantize", "int8")
    staging = lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".model.staging-")]  # noqa: E731
    _kill_when(args, lambda seen: "head epoch 1/1:" in seen and staging())
    assert not out.exists() and staging()  # the conversion was under way, in the hidden staging folder
    stderr = _run(args)
    assert "training had finished (1 epochs); writing OUT" in stderr and "head epoch" not in stderr
    assert not staging() and not progress_dir(out).exists()  # the dead run's leftover is gone too
    assert {"model.tflite", "model_int8.tflite", "finetune.json"} <= {p.name for p in out.iterdir()}


@pytest.mark.slow
def test_a_changed_data_folder_does_not_resume_and_says_why(tmp_path, checkpoint, few):
    data = tmp_path / "data"
    shutil.copytree(few, data)
    out = tmp_path / "model"
    args = _args(checkpoint, data, out, "--epochs", "3", "--batch-size", "4")
    _kill_when(args, lambda seen: "head epoch 1/3:" in seen)
    first = sorted((data / "7").iterdir())[0]
    shutil.copy(first, data / "7" / ("copy" + first.suffix))
    stderr = _run(args)
    assert "not resuming the interrupted run" in stderr and "the training images changed" in stderr
    assert "head epoch 1/3" in stderr and _manifest(out)["training"]["resumed"] is None


@pytest.mark.slow
def test_restart_flag_starts_afresh(tmp_path, checkpoint, few):
    out = tmp_path / "model"
    args = _args(checkpoint, few, out, "--epochs", "3", "--batch-size", "4")
    _kill_when(args, lambda seen: "head epoch 1/3:" in seen)
    stderr = _run([*args, "--restart"])
    assert "resuming" not in stderr and "head epoch 1/3" in stderr
    training = _manifest(out)["training"]
    assert training["resumed"] is None  # the features are the cache's (content-keyed), not the run's progress
    (reused,) = training["features_from_cache"]
    assert reused["phase"] == "head" and reused["from_cache"] == reused["images"] > 0


# ----------------------------------------------------------------------------- reuse across runs
def _cli(*args):
    proc = subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_a_second_run_with_another_learning_rate_reuses_the_features_and_the_cache_owns_them(
        tmp_path, checkpoint, few):
    data = tmp_path / "data"
    shutil.copytree(few, data)
    first = _run(_args(checkpoint, data, tmp_path / "a", "--epochs", "1"))
    assert "already in the cache" not in first
    second = _run(_args(checkpoint, data, tmp_path / "b", "--epochs", "2", "--learning-rate", "0.01"))
    assert "the features of all" in second and "already in the cache" in second and "did not run" in second
    training = _manifest(tmp_path / "b")["training"]
    assert training["feature_extraction"] == [] and training["resumed"] is None
    (computed,) = _manifest(tmp_path / "a")["training"]["feature_extraction"]
    assert training["features_from_cache"] == [{"phase": "head", "images": computed["images"],
                                                "from_cache": computed["images"]}]
    listed = json.loads(_cli("cache", "ls", "--features", "--json"))
    assert sorted(r["split"] for r in listed) == ["train", "validation"]
    assert all(r["model"] == BASE and r["complete"] and r["size_bytes"] > 0 for r in listed)
    assert "2 feature set(s)" in _cli("cache", "ls")
    kept = _cli("cache", "prune")                      # complete sets stay without --features
    assert ".features" not in kept and len(json.loads(_cli("cache", "ls", "--features", "--json"))) == 2
    assert ".features" in _cli("cache", "prune", "--features")
    assert json.loads(_cli("cache", "ls", "--features", "--json")) == []
    # a touched image is another data set: its features are computed anew
    image = sorted((data / "7").iterdir())[0]
    os.utime(image, ns=(1, 1))
    third = _run(_args(checkpoint, data, tmp_path / "c", "--epochs", "1"))
    assert "already in the cache" not in third
