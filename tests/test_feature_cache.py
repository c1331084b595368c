"""The feature cache (``zoo.training.feature_cache``) as untrusted input: whatever was planted in
``<cache>/.features/`` (links, hard links, torn or lying markers, damaged arrays, another user's
folder, hostile ``about.json``), a feature pass still returns exactly the features a clean pass
computes, and nothing outside the cache is read into the result or written.

A real Keras backbone (tiny, so the pass takes a fraction of a second) over real digit scans.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from zoo.errors import CacheError
from zoo.training.feature_cache import ROWS_NAME, FeatureStore, feature_key

from .conftest import console_script
from .digits import write_digits

tf = pytest.importorskip("tensorflow")

SIZE = (32, 32)
IMAGES = 10  # digits 0, 1 and 2 among the first 36 scans
ROWS = 2 * IMAGES  # each image as it is and one augmented view
MARKER = json.dumps({"rows": ROWS, "shape": [ROWS, 6]})  # what a finished pass of these images writes
KEY = feature_key(test="feature cache")
ABOUT = {"model": "v1_0.25_128", "phase": "head", "split": "train", "data": "/data", "images": 24, "int8": False}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from zoo.training.inputs import scan_image_folder

    found = scan_image_folder(write_digits(tmp_path_factory.mktemp("few_digits"), size=32, limit=36, classes=(0, 1, 2)))
    assert len(found) == IMAGES
    return found


@pytest.fixture(scope="module")
def backbone():
    tf.keras.utils.set_random_seed(3)
    inputs = tf.keras.Input((*SIZE, 3))
    x = tf.keras.layers.Conv2D(6, 3, strides=2, activation="relu")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(x))


def _pass(store, folder, backbone, key=KEY):
    from zoo.training.features import extract_features

    with store.slot(key, ABOUT) as directory:
        result = extract_features(tf, backbone, folder, SIZE, 8, 1, directory, ROWS_NAME, 5, None)
        return np.array(result.feats), result.computed, directory


@pytest.fixture(scope="module")
def clean(tmp_path_factory, folder, backbone):
    feats, computed, _ = _pass(FeatureStore(tmp_path_factory.mktemp("clean_cache")), folder, backbone)
    assert computed == 2 * len(folder) and feats.any()
    return feats


def test_a_second_pass_reads_the_set_and_runs_no_image_through_the_backbone(tmp_path, folder, backbone, clean):
    store = FeatureStore(tmp_path)
    _pass(store, folder, backbone)
    feats, computed, directory = _pass(store, folder, backbone)
    assert computed == 0 and np.array_equal(feats, clean)
    assert directory == tmp_path / ".features" / KEY
    (found,) = store.sets()
    assert found.complete and found.about["model"] == "v1_0.25_128" and found.size_bytes >= clean.nbytes


# ----------------------------------------------------------------------------- planted in the set
def _outside(tmp_path):
    victim = tmp_path / "outside" / "victim.npy"
    victim.parent.mkdir()
    np.save(victim, np.full((ROWS, 6), 7.0, np.float32))
    return victim


def _npy_links_outside(set_dir, victim):
    (set_dir / f"{ROWS_NAME}.npy").symlink_to(victim)
    (set_dir / f"{ROWS_NAME}.rows.json").write_text(MARKER)


def _npy_hard_linked_outside(set_dir, victim):
    os.link(victim, set_dir / f"{ROWS_NAME}.npy")
    (set_dir / f"{ROWS_NAME}.rows.json").write_text(MARKER)


def _rows_marker_torn(set_dir, victim):
    (set_dir / f"{ROWS_NAME}.rows.json").write_text('{"rows": 4')


def _rows_marker_lies_about_the_shape(set_dir, victim):
    np.save(set_dir / f"{ROWS_NAME}.npy", np.zeros((ROWS - 2, 6), np.float32))
    (set_dir / f"{ROWS_NAME}.rows.json").write_text(MARKER)


def _rows_marker_counts_beyond_the_end(set_dir, victim):
    np.save(set_dir / f"{ROWS_NAME}.npy", np.zeros((ROWS, 6), np.float32))
    (set_dir / f"{ROWS_NAME}.rows.json").write_text(json.dumps({"rows": 100 * ROWS, "shape": [ROWS, 6]}))


def _rows_marker_is_a_link(set_dir, victim):
    np.save(set_dir / f"{ROWS_NAME}.npy", np.zeros((ROWS, 6), np.float32))
    target = victim.parent / "rows.json"
    target.write_text(MARKER)
    (set_dir / f"{ROWS_NAME}.rows.json").symlink_to(target)


def _array_truncated(set_dir, victim):
    np.save(set_dir / f"{ROWS_NAME}.npy", np.zeros((ROWS, 6), np.float32))
    with open(set_dir / f"{ROWS_NAME}.npy", "r+b") as f:
        f.truncate(300)
    (set_dir / f"{ROWS_NAME}.rows.json").write_text(MARKER)


def _array_of_another_dtype(set_dir, victim):
    np.save(set_dir / f"{ROWS_NAME}.npy", np.zeros((ROWS, 6), np.float64))
    (set_dir / f"{ROWS_NAME}.rows.json").write_text(MARKER)


def _array_holds_objects(set_dir, victim):
    np.save(set_dir / f"{ROWS_NAME}.npy", np.array([{"x": 1}] * ROWS, dtype=object), allow_pickle=True)
    (set_dir / f"{ROWS_NAME}.rows.json").write_text(MARKER)


def _about_links_outside(set_dir, victim):
    (set_dir / "about.json").symlink_to(victim)


PLANTED = {f.__name__.strip("_"): f for f in (
    _npy_links_outside, _npy_hard_linked_outside, _rows_marker_torn, _rows_marker_lies_about_the_shape,
    _rows_marker_counts_beyond_the_end, _rows_marker_is_a_link, _array_truncated, _array_of_another_dtype,
    _array_holds_objects, _about_links_outside)}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_whatever_is_planted_in_a_set_the_pass_returns_the_clean_features_and_leaves_outside_alone(
        tmp_path, folder, backbone, clean, case):
    victim = _outside(tmp_path)
    set_dir = tmp_path / "cache" / ".features" / KEY
    set_dir.mkdir(parents=True)
    PLANTED[case](set_dir, victim)
    before = {p.name: p.read_bytes() for p in victim.parent.iterdir()}
    feats, computed, _ = _pass(FeatureStore(tmp_path / "cache"), folder, backbone)
    assert np.array_equal(feats, clean)
    assert computed == 2 * len(folder)  # nothing planted was taken as rows already done
    assert {p.name: p.read_bytes() for p in victim.parent.iterdir()} == before
    assert not (set_dir / f"{ROWS_NAME}.npy").is_symlink() and os.stat(set_dir / f"{ROWS_NAME}.npy").st_nlink == 1


def test_a_set_folder_that_is_a_link_is_refused_by_name(tmp_path, folder, backbone):
    victim = _outside(tmp_path)
    (tmp_path / "cache" / ".features").mkdir(parents=True)
    (tmp_path / "cache" / ".features" / KEY).symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(CacheError, match="symbolic link") as refused:
        _pass(FeatureStore(tmp_path / "cache"), folder, backbone)
    assert KEY in str(refused.value)
    assert [p.name for p in victim.parent.iterdir()] == ["victim.npy"]


def test_the_features_folder_as_a_file_is_refused_by_name(tmp_path, folder, backbone):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / ".features").write_text("not a folder")
    with pytest.raises(CacheError, match=r"\.features") as refused:
        _pass(FeatureStore(tmp_path / "cache"), folder, backbone)
    assert "remove" in refused.value.hint or "move" in refused.value.hint


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_another_users_set_is_neither_read_nor_written(tmp_path, folder, backbone, clean):
    set_dir = tmp_path / "cache" / ".features" / KEY
    set_dir.mkdir(parents=True)
    np.save(set_dir / f"{ROWS_NAME}.npy", np.zeros((ROWS, 6), np.float32))
    (set_dir / f"{ROWS_NAME}.rows.json").write_text(MARKER)
    for path in (set_dir, *set_dir.iterdir()):
        os.chown(path, 12345, 12345)
    feats, computed, directory = _pass(FeatureStore(tmp_path / "cache"), folder, backbone)
    assert np.array_equal(feats, clean) and computed == 2 * len(folder)
    assert directory != set_dir  # a private temporary folder
    assert sorted(p.name for p in set_dir.iterdir()) == [f"{ROWS_NAME}.npy", f"{ROWS_NAME}.rows.json"]
    assert not np.load(set_dir / f"{ROWS_NAME}.npy").any()


# ----------------------------------------------------------------------------- listing and pruning
def _cli(cache, *args):
    proc = subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MOBILENET_ZOO_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_listing_shows_hostile_about_files_harmlessly_and_pruning_never_follows_a_link(tmp_path):
    cache = tmp_path / "cache"
    sets = cache / ".features"
    hostile = sets / ("a" * 40)
    hostile.mkdir(parents=True)
    (hostile / "about.json").write_text(json.dumps({
        "model": "\x1b]0;owned\x07v1\x1b[2J", "phase": ["head"], "images": True, "int8": "yes", "data": "x" * 5000}))
    (hostile / f"{ROWS_NAME}.rows.json").write_text(json.dumps({"rows": 3, "shape": [6, 6]}))  # half-filled
    (sets / "not-a-key").mkdir()                                  # a foreign name: not ours to list or remove
    victim = _outside(tmp_path)
    (sets / ("b" * 40)).symlink_to(victim.parent, target_is_directory=True)
    listed = json.loads(_cli(cache, "cache", "ls", "--features", "--json"))
    assert listed == [{"model": "?]0;owned?v1?[2J", "phase": None, "split": None, "data": "x" * 300, "images": None,
                       "int8": False, "complete": False, "size_bytes": listed[0]["size_bytes"],
                       "path": str(hostile)}]
    assert "\x1b" not in _cli(cache, "cache", "ls", "--features") and "1 feature set(s)" in _cli(cache, "cache", "ls")
    pruned = _cli(cache, "cache", "prune", "--features")
    assert str(hostile) in pruned and not hostile.exists()
    assert (sets / "not-a-key").is_dir() and (sets / ("b" * 40)).is_symlink()
    assert [p.name for p in victim.parent.iterdir()] == ["victim.npy"]


def test_a_features_folder_that_is_a_link_lists_nothing_and_prunes_nothing(tmp_path):
    victim = _outside(tmp_path)
    (victim.parent / ("c" * 40)).mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / ".features").symlink_to(victim.parent, target_is_directory=True)
    assert json.loads(_cli(tmp_path / "cache", "cache", "ls", "--features", "--json")) == []
    _cli(tmp_path / "cache", "cache", "prune", "--features")
    assert (victim.parent / ("c" * 40)).is_dir()
