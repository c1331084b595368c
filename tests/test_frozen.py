"""Frozen graphs: a tiny upstream-shaped GraphDef (node `input` -> `MobilenetV1/Predictions/Reshape_1`)
run through the product's loader, compared with TensorFlow itself and with the same
network converted to .tflite and run by LiteRT."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from zoo.catalog import load_catalog
from zoo.errors import RestoreError, UsageError
from zoo.formats import restore, restore_file

from tests import slim_builders  # noqa: E402  (a broken builder must fail loudly, not skip)

pytestmark = pytest.mark.tf
SIZE = 32
OUTPUT = "MobilenetV1/Predictions/Reshape_1"


def _tiny_network(batch: int | None):
    """A conv -> relu6 -> mean -> dense -> softmax graph with fixed random weights."""
    rng = np.random.default_rng(1)
    w = tf.constant(rng.normal(0, 0.5, (3, 3, 3, 8)).astype(np.float32))
    d = tf.constant(rng.normal(0, 0.5, (8, 1001)).astype(np.float32))
    b = tf.constant(rng.normal(0, 0.1, (1001,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([batch, SIZE, SIZE, 3], tf.float32, name="input")])
    def net(x):
        y = tf.nn.relu6(tf.nn.conv2d(x, w, 2, "SAME"))
        y = tf.reduce_mean(y, axis=[1, 2])
        return tf.identity(tf.nn.softmax(tf.matmul(y, d) + b), name=OUTPUT)

    return net, 3 * 3 * 3 * 8 + 8 * 1001 + 1001


def _write_model_dir(folder: Path, batch: int | None) -> tuple[Path, object, int]:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    folder.mkdir(parents=True, exist_ok=True)
    net, n_weights = _tiny_network(batch)
    concrete = net.get_concrete_function()
    graph_def = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    (folder / "tiny_frozen.pb").write_bytes(graph_def.SerializeToString())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], net)
    (folder / "tiny.tflite").write_bytes(converter.convert())
    return folder, net, n_weights


@pytest.fixture(scope="module")
def entry():
    base = load_catalog(with_profile=False).get("v1_0.25_128")
    return dataclasses.replace(base, id="tiny_v1", input_size=(SIZE, SIZE, 3),
                               files={"frozen_graph": "tiny_frozen.pb", "tflite": "tiny.tflite"})


@pytest.fixture(scope="module")
def fixed_batch_dir(tmp_path_factory):
    return _write_model_dir(tmp_path_factory.mktemp("fixed"), batch=1)


@pytest.fixture(scope="module")
def dynamic_batch_dir(tmp_path_factory):
    return _write_model_dir(tmp_path_factory.mktemp("dynamic"), batch=None)


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(7).uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)


def _reference(net, images: np.ndarray) -> np.ndarray:
    return np.concatenate([net(images[i:i + 1]).numpy() for i in range(len(images))])


@pytest.mark.parametrize("layout", ["fixed_batch_dir", "dynamic_batch_dir"])
def test_frozen_matches_tensorflow_and_tflite(layout, entry, request):
    folder, net, _ = request.getfixturevalue(layout)
    images = _images(3)
    expected = _reference(net, images)
    frozen = restore(folder, "frozen", entry=entry)
    lite = restore(folder, "tflite", entry=entry)
    got_frozen, got_lite = frozen(images), lite(images)
    assert got_frozen.shape == got_lite.shape == (3, 1001)
    assert got_frozen.dtype == np.float32
    np.testing.assert_allclose(got_frozen, expected, atol=1e-6)
    np.testing.assert_allclose(got_lite, expected, atol=1e-5)
    np.testing.assert_allclose(got_frozen.sum(axis=1), 1.0, atol=1e-5)


def test_fixed_batch_runs_in_chunks(fixed_batch_dir, entry):
    folder, net, _ = fixed_batch_dir
    model = restore(folder, "frozen", entry=entry)
    assert model.fixed_batch == 1
    images = _images(5)
    one_by_one = np.concatenate([model(images[i]) for i in range(5)])  # [H,W,3] also accepted
    np.testing.assert_allclose(model(images), one_by_one, atol=1e-7)
    assert model(images[:0]).shape == (0, 1001)


def test_summary_counts_graph_weights(fixed_batch_dir, entry):
    folder, _, n_weights = fixed_batch_dir
    info = restore(folder, "frozen", entry=entry, threads=1).summary()
    assert info["format"] == "frozen"
    assert info["input_shape"] == [None, SIZE, SIZE, 3]
    assert info["output_shape"] == [None, 1001]
    assert info["input_tensor"] == "input:0"
    assert info["output_tensor"] == OUTPUT + ":0"
    assert info["parameters"] == n_weights
    assert info["batch"] == 1 and info["threads"] == 1


def test_export_writes_a_loadable_saved_model(fixed_batch_dir, entry, tmp_path):
    folder, net, _ = fixed_batch_dir
    model = restore(folder, "frozen", entry=entry)
    out = model.export(tmp_path / "saved")
    loaded = tf.saved_model.load(str(out))
    images = _images(1)
    probs = loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(probs, model(images), atol=1e-6)
    with pytest.raises(UsageError, match="not empty"):
        model.export(out)


def test_node_names_missing_from_the_graph_fall_back_to_its_own_once(fixed_batch_dir, entry, tmp_path):
    """Upstream's sources disagree on some graphs' node names: the file wins, and says so."""
    from zoo.notices import ZooWarning

    folder, _, _ = fixed_batch_dir
    images = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    expected = restore(folder, "frozen", entry=entry)(images)
    bad = dataclasses.replace(entry, input_node="images", output_node="MobilenetV2/Predictions/Reshape_1")
    with pytest.warns(ZooWarning) as seen:
        model = restore(folder, "frozen", entry=bad)
    said = " ".join(str(w.message) for w in seen)
    assert "'images'" in said and "MobilenetV2/Predictions/Reshape_1" in said and "Placeholder" not in said
    np.testing.assert_allclose(model(images), expected, rtol=0, atol=1e-6)

    # a graph with two softmax nodes cannot tell: one clear error listing them
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 32, 32, 3], name="input")
        flat = tf.reshape(x, [-1, 32 * 32 * 3])[:, :1001]
        tf.nn.softmax(flat, name="first")
        tf.nn.softmax(flat * 2.0, name="second")
    two = tmp_path / "two.pb"
    two.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(RestoreError) as info:
        restore_file(bad, two, "frozen")
    assert "first" in info.value.hint and "second" in info.value.hint and "tiny_v1" in info.value.message


def test_input_size_mismatch_is_reported(fixed_batch_dir, entry):
    folder, _, _ = fixed_batch_dir
    with pytest.raises(RestoreError, match=r"\[1, 32, 32, 3\].*\[N, 64, 64, 3\]"):
        restore(folder, "frozen", entry=dataclasses.replace(entry, input_size=(64, 64, 3)))


def test_damaged_graph_file(entry, tmp_path):
    bad = tmp_path / "tiny_frozen.pb"
    bad.write_bytes(b"\x00not a graph def\xff" * 10)
    with pytest.raises(RestoreError, match="tiny_frozen.pb"):
        restore_file(entry, bad, "frozen")


def test_missing_file_and_bad_options(entry, tmp_path):
    with pytest.raises(RestoreError, match="no frozen_graph file matching"):
        restore(tmp_path, "frozen", entry=entry)
    with pytest.raises(UsageError, match="weights"):
        restore(tmp_path, "frozen", entry=entry, weights="ema")
    with pytest.raises(UsageError, match="unknown model format"):
        restore(tmp_path, "saved_model", entry=entry)
    with pytest.raises(UsageError, match="no tarball holds an onnx file; they come from a conversion"):
        restore(tmp_path, "onnx", entry=entry)


# ------------------------------------------------------------------ upstream-shaped tiny models


@pytest.fixture(scope="module", params=[
    "v1", pytest.param("v2", marks=pytest.mark.slow)])
def built(request, tmp_path_factory):
    write = {"v1": slim_builders.write_v1_model, "v2": slim_builders.write_v2_model}[request.param]
    return write(tmp_path_factory.mktemp(f"slim_{request.param}"))


def test_every_format_reproduces_the_slim_graph(built):
    """frozen == reference == tflite == ckpt, on a batch of 2."""
    expected = built.probabilities
    assert expected.shape == (slim_builders.BATCH, 1001)
    assert expected.max() < 0.9  # not saturated, so the comparison means something
    for fmt in ("frozen", "tflite", "ckpt"):
        model = restore(built.directory, fmt, entry=built.entry)
        got = model(built.images)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=fmt)
        assert (got.argmax(axis=1) == expected.argmax(axis=1)).all(), fmt
    frozen = restore(built.directory, "frozen", entry=built.entry)
    assert frozen.summary()["parameters"] <= built.param_count  # BN folded: never more weights
