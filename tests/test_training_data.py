"""Class folders -> checked file lists (``zoo.training.inputs``) and TF_CONFIG checks (``zoo.training.distribute``).

Pure file handling and parsing: no TensorFlow, so these run in a blink.
"""

from __future__ import annotations

import json

import pytest

from zoo.training.distribute import StrategyPlan, parse_tf_config, plan_strategy
from zoo.errors import UsageError
from zoo.training.inputs import scan_image_folder, split

from .digits import write_digits

pytest.importorskip("PIL")
pytest.importorskip("sklearn")


@pytest.fixture
def digits(tmp_path):
    return write_digits(tmp_path / "digits", size=16, limit=120)


def test_classes_are_sorted_folder_names_and_every_image_is_listed(digits):
    folder = scan_image_folder(digits)
    assert folder.classes == tuple(str(d) for d in range(10))
    assert len(folder) == 120
    assert sum(folder.counts().values()) == 120
    for path, label in zip(folder.files, folder.labels):
        assert path.split("/")[-2] == folder.classes[label]


def test_hidden_files_are_ignored(digits):
    (digits / "3" / ".DS_Store").write_bytes(b"\0\0junk")
    (digits / ".cache").mkdir()
    assert len(scan_image_folder(digits)) == 120


def test_split_is_stratified_disjoint_and_reproducible(digits):
    folder = scan_image_folder(digits)
    train, val = split(folder, 0.25, seed=3)
    assert set(train.files).isdisjoint(val.files) and len(train) + len(val) == len(folder)
    assert all(n >= 1 for n in val.counts().values()) and all(n >= 1 for n in train.counts().values())
    assert split(folder, 0.25, seed=3)[1].files == val.files


def test_shards_cover_the_set_once(digits):
    folder = scan_image_folder(digits)
    shards = [folder.shard(i, 3) for i in range(3)]
    assert sorted(f for s in shards for f in s.files) == sorted(folder.files)


@pytest.mark.parametrize("case, expected", [
    ("one_class", "at least two classes"),
    ("no_classes", "no class folders"),
    ("empty_class", "is empty"),
    ("text_file", "not readable images"),
    ("fake_jpeg", "not readable images"),
    ("missing", "no such directory"),
])
def test_bad_folders_are_refused_with_the_reason(tmp_path, case, expected):
    root = tmp_path / "data"
    if case != "missing":
        write_digits(root, size=8, limit=40, classes=(1,) if case == "one_class" else (1, 2))
    if case == "no_classes":
        import shutil

        for sub in list(root.iterdir()):
            shutil.rmtree(sub)
    if case == "empty_class":
        (root / "zebra").mkdir()
    if case == "text_file":
        (root / "1" / "notes.txt").write_text("hello")
    if case == "fake_jpeg":
        (root / "2" / "photo.jpg").write_bytes(b"<html>404</html>")
    with pytest.raises(UsageError) as err:
        scan_image_folder(root)
    assert expected in err.value.message
    if case in ("text_file", "fake_jpeg"):
        assert ("notes.txt" if case == "text_file" else "photo.jpg") in err.value.message
    if case == "empty_class":
        assert "zebra" in err.value.message


def test_validation_folder_must_have_the_training_classes(tmp_path):
    train = write_digits(tmp_path / "train", size=8, limit=60, classes=(1, 2, 3))
    val = write_digits(tmp_path / "val", size=8, limit=60, classes=(1, 2))
    classes = scan_image_folder(train).classes
    with pytest.raises(UsageError, match="missing: 3"):
        scan_image_folder(val, classes=classes, param="val_data")


def test_a_class_too_small_to_split(tmp_path):
    root = write_digits(tmp_path / "d", size=8, limit=40, classes=(1, 2))
    for extra in list((root / "2").iterdir())[1:]:
        extra.unlink()
    with pytest.raises(UsageError, match="'2' has 1 image"):
        split(scan_image_folder(root), 0.2)


# ----------------------------------------------------------------------------- TF_CONFIG
def _config(**task):
    return json.dumps({"cluster": {"worker": ["127.0.0.1:2001", "127.0.0.1:2002"]},
                       "task": task or {"type": "worker", "index": 0}})


def test_worker_zero_is_the_chief_without_a_chief_task():
    assert parse_tf_config(_config(type="worker", index=0)) == StrategyPlan("multiworker", 2, 0, True)
    assert parse_tf_config(_config(type="worker", index=1)) == StrategyPlan("multiworker", 2, 1, False)


def test_a_chief_task_writes_and_workers_shard_after_it():
    text = json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]}, "task": {"type": "worker", "index": 1}})
    assert parse_tf_config(text) == StrategyPlan("multiworker", 3, 2, False)
    text = json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "chief", "index": 0}})
    assert parse_tf_config(text).is_chief


@pytest.mark.parametrize("text, expected", [
    ("{not json", "not valid JSON"),
    ('["a"]', '"cluster" object'),
    ('{"cluster": {"worker": ["h:1"]}}', '"task" object'),
    ('{"cluster": {"worker": "h:1"}, "task": {"type": "worker", "index": 0}}', "list of"),
    ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 5}}', "out of range"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "evaluator", "index": 0}}', "not in the cluster"),
    ('{"cluster": {"worker": ["h:1"], "ps": ["h:2"]}, "task": {"type": "worker", "index": 0}}', "ps"),
    ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', 'no "worker"'),
])
def test_malformed_tf_config_is_one_clear_error(text, expected):
    with pytest.raises(UsageError) as err:
        parse_tf_config(text)
    assert err.value.message.startswith("TF_CONFIG is malformed") and expected in err.value.message


def test_strategy_choice():
    assert plan_strategy("auto", None).kind == "default"
    assert plan_strategy("auto", None, gpus=2).kind == "mirrored"
    assert plan_strategy("mirrored", None).kind == "mirrored"
    assert plan_strategy("auto", _config()).kind == "multiworker"
    single = json.dumps({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}})
    assert plan_strategy("auto", single).kind == "default"
    with pytest.raises(UsageError, match="needs the TF_CONFIG"):
        plan_strategy("multiworker", None)
    with pytest.raises(UsageError, match="unknown strategy="):
        plan_strategy("ring", None)
