"""The whole path a user takes: an upstream-shaped tarball on a server -> `fetch` ->
`restore` / `classify` in every format, through the installed CLI's code."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from .fetch_helpers import entry_served_at, write_catalog


tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _tarball(directory) -> bytes:
    """Pack a directory the way upstream v1 tarballs are packed: `./<file>` members."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=f"./{path.name}", recursive=False)
    return raw.getvalue()


@pytest.fixture(scope="module")
def tiny_v1(tmp_path_factory):
    from . import slim_builders

    return slim_builders.write_v1_model(tmp_path_factory.mktemp("tiny") / "m", width=0.25, resolution=32)


def test_fetch_then_restore_and_classify_every_format(cli, fault_server, tiny_v1, tmp_path):
    data = _tarball(tiny_v1.directory)
    url = fault_server.add(f"/models/{tiny_v1.entry.id}.tgz", data)
    entry = entry_served_at(tiny_v1.entry, url, data)
    catalog = write_catalog(tmp_path / "catalog.yaml", [entry])
    args = ("--catalog", str(catalog))

    for fmt in ("ckpt", "frozen", "tflite"):
        code, out, err = cli(*args, "restore", tiny_v1.entry.id, "--format", fmt, "--json")
        assert code == 0, err
        summary = json.loads(out)
        assert summary["format"] == fmt and summary["input_shape"] == [None, 32, 32, 3]
    assert fault_server.stats(f"/models/{tiny_v1.entry.id}.tgz").requests == 1   # fetched once, then cached

    code, out, err = cli(*args, "restore", tiny_v1.entry.id, "--format", "ckpt", "--json")
    ckpt = json.loads(out)
    assert ckpt["parameters"] == tiny_v1.param_count
    assert any("global_step" in name for names in ckpt["skipped"].values() for name in names)

    # classify agrees across formats on a real photo (same weights, three runtimes)
    image = str(Path(__file__).parent / "data" / "cat.bmp")
    tops = {}
    for fmt in ("ckpt", "frozen", "tflite"):
        code, out, err = cli(*args, "classify", tiny_v1.entry.id, image, "--format", fmt, "--top", "3", "--json")
        assert code == 0, err
        preds = json.loads(out)[0]["predictions"]
        tops[fmt] = [p["index"] for p in preds]
        scores = np.array([p["score"] for p in preds])
        assert np.all(np.diff(scores) <= 0)
    assert tops["ckpt"] == tops["frozen"] == tops["tflite"]


@pytest.mark.parametrize("fmt", ["ckpt", "frozen", "frozen-batch-1"])
def test_export_has_one_signature_for_every_format(tiny_v1, tmp_path, fmt):
    """`restore --export`: serving_default, images [N,H,W,3] -> probabilities, any batch size."""
    from zoo.formats import restore_file

    source = {"ckpt": tiny_v1.checkpoint, "frozen": tiny_v1.frozen_graph}.get(fmt)
    if fmt == "frozen-batch-1":  # like upstream's frozen graphs, whose input placeholder is [1, H, W, 3]
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(tiny_v1.frozen_graph.read_bytes())
        node = next(n for n in graph_def.node if n.name == tiny_v1.entry.input_node)
        node.attr["shape"].shape.dim[0].size = 1
        source = tmp_path / tiny_v1.frozen_graph.name
        source.write_bytes(graph_def.SerializeToString())
    model = restore_file(tiny_v1.entry, source, fmt.split("-")[0])
    assert fmt != "frozen-batch-1" or model.fixed_batch == 1
    out = model.export(tmp_path / "saved")
    loaded = tf.saved_model.load(str(out))
    serving = loaded.signatures["serving_default"]
    (spec,) = serving.structured_input_signature[1].values()
    assert list(serving.structured_input_signature[1]) == ["images"] and spec.shape.as_list() == [None, 32, 32, 3]
    assert list(serving.structured_outputs) == ["probabilities"]
    batch = np.concatenate([tiny_v1.images, tiny_v1.images[::-1], tiny_v1.images])[:3]  # 3 != any fixed batch
    got = serving(images=tf.constant(batch))["probabilities"].numpy()
    assert got.shape == (3, tiny_v1.entry.num_classes)
    np.testing.assert_allclose(got, model(batch), atol=1e-5)
