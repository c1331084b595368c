"""The whole path a user takes: an upstream-shaped tarball on a server -> `fetch` ->
`restore` / `classify` in every format, through the installed CLI's code."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from .fetch_helpers import write_catalog


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
    entry = tiny_v1.entry.to_dict()
    for derived in ("model_size_mb", "url", "sha256", "size_bytes"):  # JSON conveniences, not catalog fields
        entry.pop(derived)
    sha = hashlib.sha256(data).hexdigest()
    entry.update(releases=[{"release": "r1", "url": url, "sha256": sha, "size_bytes": len(data)}])
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
