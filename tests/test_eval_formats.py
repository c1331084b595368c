"""`eval` gives the same top-1/top-5 through all three formats of one upstream-shaped model.

A tiny MobilenetV2 tarball (``slim_builders``: checkpoint with averages, frozen graph and
.tflite of the same weights) and a dozen JPEGs at odd sizes, labelled a third with what the
frozen graph itself predicts (computed here with TF ops, not zoo), a third with the class
it ranks third and a third with its 21st, so top-1 and top-5 are both informative.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
from PIL import Image  # noqa: E402

from zoo.data.datasets import imagenet_synsets
from zoo.run.evaluation import evaluate
from zoo.formats import restore_file

from . import slim_builders  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return slim_builders.write_v2_model(tmp_path_factory.mktemp("tiny_v2"), seed=4)


@pytest.fixture(scope="module")
def labelled(tiny, tmp_path_factory):
    """(folder of synset folders, expected top-1 %, expected top-5 %)."""
    root = tmp_path_factory.mktemp("tiny_set")
    rng = np.random.default_rng(9)
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(tiny.frozen_graph.read_bytes())
    items = []
    for i in range(12):
        h, w = int(rng.integers(30, 90)), int(rng.integers(30, 90))
        smooth = rng.uniform(0, 255, (h // 6 + 2, w // 6 + 2, 3)).astype(np.uint8)
        img = Image.fromarray(smooth).resize((w, h), Image.Resampling.BICUBIC)
        path = root / f"img{i:02d}.jpg"
        img.save(path, quality=95)
        x = tf.image.convert_image_dtype(tf.io.decode_jpeg(path.read_bytes(), channels=3), tf.float32)
        x = tf.image.resize(tf.image.central_crop(x, 0.875)[None], (32, 32), "bilinear", antialias=False)
        probs = tf.compat.v1.wrap_function(
            lambda t: tf.compat.v1.import_graph_def(graph_def, {"input:0": t}, ["MobilenetV2/Predictions/Reshape_1:0"]),
            [tf.TensorSpec([1, 32, 32, 3], tf.float32)])(((x - 0.5) * 2.0))[0].numpy()[0]
        order = np.argsort(-probs, kind="stable")
        label = int(order[(0, 2, 20)[i % 3]])  # right, in the top 5, out of it
        label = label if label >= 1 else int(order[1])
        items.append((path, label, label in order[:5], label == order[0]))
    for path, label, _, _ in items:
        folder = root / "val" / imagenet_synsets()[label - 1]
        folder.mkdir(parents=True, exist_ok=True)
        path.rename(folder / path.name)
    top1 = 100.0 * sum(i[3] for i in items) / len(items)
    top5 = 100.0 * sum(i[2] for i in items) / len(items)
    return root / "val", top1, top5


def test_three_formats_agree(tiny, labelled):
    root, top1, top5 = labelled
    files = {"ckpt": tiny.checkpoint, "frozen": tiny.frozen_graph, "tflite": tiny.tflite}
    results = {fmt: evaluate(restore_file(tiny.entry, path, fmt), root, batch_size=5) for fmt, path in files.items()}
    for fmt, result in results.items():
        assert (result.format, result.images) == (fmt, 12)
        assert (result.top1, result.top5) == (pytest.approx(top1, abs=1e-3), pytest.approx(top5, abs=1e-3)), fmt
    assert 0 < top1 < top5 < 100


def test_cli_eval_of_a_catalog_name_fetches_once_and_checks_the_data_first(cli, fault_server, tiny, labelled,
                                                                           tmp_path):
    """MODEL resolves as in `classify`: a catalog name, fetched from its URL (a loopback server)."""
    import io
    import json
    import tarfile

    from .fetch_helpers import entry_served_at, write_catalog

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path in sorted(tiny.directory.iterdir()):
            tar.add(path, arcname=f"./{path.name}", recursive=False)
    data = raw.getvalue()
    route = f"/models/{tiny.entry.id}.tgz"
    url = fault_server.add(route, data)
    entry = entry_served_at(tiny.entry, url, data)
    args = ("--catalog", str(write_catalog(tmp_path / "catalog.yaml", [entry])))

    code, _, err = cli(*args, "eval", tiny.entry.id, "--data", str(tmp_path / "missing"))
    assert code == 2 and "data set not found" in err
    assert fault_server.stats(route).requests == 0  # bad data fails before any download

    root, top1, top5 = labelled
    for fmt in ("tflite", "frozen", "ckpt"):
        code, out, err = cli(*args, "eval", tiny.entry.id, "--data", str(root), "--format", fmt, "--json")
        assert code == 0, err
        result = json.loads(out)
        assert (result["format"], result["images"]) == (fmt, 12)
        assert (result["top1"], result["top5"]) == (pytest.approx(top1, abs=1e-3), pytest.approx(top5, abs=1e-3))
    assert fault_server.stats(route).requests == 1
