"""Tarballs laid out as public evidence says upstream's are, fetched and run through the CLI.

The fixture entries take ``archive_root`` and ``files`` from the shipped catalog (the root
renamed to the tiny model's), so a catalog pattern that misses the real layout fails here.
The layouts and their sources (catalog.yaml ``layout_evidence``; tests/data/SOURCES.md):

* v2 uint8 (``quantized_v2_<res>_<depth>.tgz``) unpacks into ``v2_<res>_<depth>/`` with
  ``model.tflite`` and ``model.ckpt-<step>``: ctuning/ck-tensorflow
  ``script/install-package-tensorflowmodel-mobilenet-py/install.sh`` and ctuning/ck-mlperf
  ``package/model-tf-and-tflite-mlperf-mobilenet-v2-quant/.cm/meta.json`` (verified); the
  frozen graph's name is not documented (``graph_frozen.pb`` here, from one public script: inferred).
* v3 uint8: ``<root>/pristine/model.ckpt-<step>`` beside ``<root>.pb`` and ``<root>.tflite``.
* EdgeTPU: ``<root>/<root>_{float,int8,uint8}.tflite`` (mlcommons/mobile_models
  ``v0_7/tflite/README.md``). The ``_uint8`` file here is the real upstream uint8 v1 0.25/128
  (tests/data/SOURCES.md), so a right pick answers "cat" for the real cat photo; the other two
  are a tiny float model with another input size, so a wrong pick fails loudly.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from zoo.catalog import load_catalog  # noqa: E402

from . import slim_builders  # noqa: E402
from .conftest import DATA  # noqa: E402
from .fetch_helpers import entry_served_at, write_catalog  # noqa: E402
from .test_classify import CAT_CLASSES  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _tarball(root: Path) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    return raw.getvalue()


def _from_shipped(entry, shipped_id: str, root: str):
    """``entry`` with the shipped catalog's archive_root and files for ``shipped_id``, its root renamed."""
    shipped = load_catalog().get(shipped_id)
    files = {role: pattern.replace(shipped.archive_root, root) for role, pattern in shipped.files.items()}
    return dataclasses.replace(entry, archive_root=root, files=files, output_node=shipped.output_node)


def _serve(fault_server, tmp_path, entry, layout: Path) -> tuple[str, ...]:
    data = _tarball(layout)
    raw = entry_served_at(entry, fault_server.add(f"/m/{entry.id}.tgz", data), data)
    return ("--catalog", str(write_catalog(tmp_path / "catalog.yaml", [raw])))


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory):
    return slim_builders.write_v2_model(tmp_path_factory.mktemp("tiny_v2"), seed=5)


@pytest.fixture(scope="module")
def tiny_v3(tmp_path_factory):
    return slim_builders.write_v3_model(tmp_path_factory.mktemp("tiny_v3"), seed=6)


def _with_v2_ranges(tensors: dict) -> dict:
    """Ranges [-8, 8] under contrib.quantize's names (``zoo.formats.fake_quant`` says which)."""
    out = dict(tensors)
    for name in tensors:
        if name.endswith(("/weights", "/depthwise_weights")) and "ExponentialMovingAverage" not in name:
            scope = name.rsplit("/", 1)[0]
            block = scope.rsplit("/", 1)[0]
            for kind_scope in (f"{scope}/weights_quant", f"{scope}/act_quant", f"{block}/add_quant"):
                out[f"{kind_scope}/min"], out[f"{kind_scope}/max"] = np.float32(-8.0), np.float32(8.0)
    return out


def test_v2_uint8_layout_fetches_and_every_command_finds_its_file(cli, fault_server, tiny_v2, tmp_path):
    root = "v2_32_35"
    layout = tmp_path / "layout" / root
    layout.mkdir(parents=True)
    step = "model.ckpt-2685865"
    # a uint8 tarball's checkpoint carries fake-quant ranges: one per weight and output, one per block's Add
    slim_builders.rewrite_checkpoint(tiny_v2.checkpoint, layout / step, _with_v2_ranges)
    shutil.copy(tiny_v2.tflite, layout / "model.tflite")
    shutil.copy(tiny_v2.frozen_graph, layout / "graph_frozen.pb")
    entry = _from_shipped(tiny_v2.entry, "v2_0.35_96_quant", root)
    cat = _serve(fault_server, tmp_path, entry, layout.parent)

    code, out, err = cli(*cat, "fetch", entry.id, "--json")
    assert code == 0 and "warning" not in err, err
    manifest = json.loads((Path(json.loads(out)[0]["path"]) / "manifest.json").read_text())
    assert manifest["roles"] == {"checkpoint": f"{root}/{step}", "frozen_graph": f"{root}/graph_frozen.pb",
                                 "tflite": f"{root}/model.tflite"}
    for fmt, name in (("ckpt", step), ("frozen", "graph_frozen.pb"), ("tflite", "model.tflite")):
        code, out, err = cli(*cat, "restore", entry.id, "--format", fmt, "--json")
        assert code == 0, err
        assert json.loads(out)["source"].endswith(f"{root}/{name}")
    code, out, err = cli(*cat, "classify", entry.id, str(DATA / "cat.bmp"), "--format", "ckpt", "--json")
    assert code == 0 and json.loads(out)[0]["predictions"], err
    code, out, err = cli(*cat, "bench", entry.id, "--format", "frozen", "--runs", "2", "--warmup", "0", "--json")
    assert code == 0 and json.loads(out)[0]["format"] == "frozen", err
    code, out, err = cli(*cat, "cache", "path", entry.id, "--file", "checkpoint")
    assert code == 0 and out.strip().endswith(f"{root}/{step}"), err


def test_v3_uint8_checkpoint_is_found_in_pristine(cli, fault_server, tiny_v3, tmp_path):
    source = tiny_v3.checkpoint.parent.parent  # the builder's <root>/ with ema/ and pristine/
    root = "v3-large_32_0.75_uint8"
    layout = tmp_path / "layout" / root
    (layout / "pristine").mkdir(parents=True)
    for part in (source / "pristine").iterdir():  # the uint8 tarball has pristine/ only, no ema/
        shutil.copy(part, layout / "pristine" / part.name.replace("model-", "model.ckpt-"))
    shutil.copy(tiny_v3.tflite, layout / f"{root}.tflite")
    shutil.copy(tiny_v3.frozen_graph, layout / f"{root}.pb")
    entry = _from_shipped(tiny_v3.entry, "v3_large_1.0_224_quant", root)
    cat = _serve(fault_server, tmp_path, entry, layout.parent)
    code, out, err = cli(*cat, "fetch", entry.id, "--json")
    assert code == 0 and "warning" not in err, err
    code, out, err = cli(*cat, "restore", entry.id, "--format", "ckpt", "--weights", "raw", "--json")
    assert code == 0, err
    assert "/pristine/model.ckpt-4321" in json.loads(out)["source"]


def test_edgetpu_three_tflite_files_the_uint8_one_is_taken(cli, fault_server, tiny_v2, tmp_path):
    root = "mobilenet_edgetpu_224_1.0"
    layout = tmp_path / "layout" / root
    layout.mkdir(parents=True)
    shutil.copy(DATA / "mobilenet_v1_0.25_128_quant.tflite", layout / f"{root}_uint8.tflite")
    shutil.copy(tiny_v2.tflite, layout / f"{root}_float.tflite")
    shutil.copy(tiny_v2.tflite, layout / f"{root}_int8.tflite")
    shipped = load_catalog().get("edgetpu_1.0_224_quant")
    entry = dataclasses.replace(shipped, id="edgetpu_like", input_size=(128, 128, 3), aliases=(),
                                latency_ms={}, top1=None, top5=None)
    cat = _serve(fault_server, tmp_path, entry, layout.parent)
    code, out, err = cli(*cat, "fetch", entry.id, "--json")
    assert code == 0, err
    # no checkpoint or graph in this tarball: published all the same, the manifest says what was found
    manifest = json.loads((Path(json.loads(out)[0]["path"]) / "manifest.json").read_text())
    assert manifest["roles"] == {"checkpoint": None, "frozen_graph": None, "tflite": f"{root}/{root}_uint8.tflite"}
    code, out, err = cli(*cat, "classify", entry.id, str(DATA / "cat.bmp"), "--top", "1", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["predictions"][0]["label"] in CAT_CLASSES
    code, out, err = cli(*cat, "restore", entry.id, "--format", "ckpt")
    assert code == 1 and "no checkpoint file" in err and f"{root}_uint8.tflite" in err
    assert "fetching it again will not help" in err
    # a file of the fetched tarball given by path is known by the cache's manifest
    cached = Path(json.loads(cli(*cat, "fetch", entry.id, "--json")[1])[0]["path"]) / "model" / root
    code, out, err = cli(*cat, "restore", str(cached / f"{root}_uint8.tflite"), "--json")
    assert code == 0 and json.loads(out)["id"] == "edgetpu_like", err


# ----------------------------------------------------------------------------- the shipped catalog alone
def _evidence_layout(entry, folder: Path) -> list[str]:
    """Empty files where the public evidence (module docstring) puts this entry's files."""
    if entry.family == "v2" and entry.quantized:
        res, depth = entry.releases[0].url.rsplit("/", 1)[1].removesuffix(".tgz").split("_")[-2:]
        root = f"v2_{res}_{depth}"
        names = [f"{root}/model.ckpt-2685865.index", f"{root}/model.ckpt-2685865.data-00000-of-00001",
                 f"{root}/model.tflite"]
    elif entry.family == "v3" and entry.quantized:
        root = entry.releases[0].url.rsplit("/", 1)[1].removesuffix(".tgz")
        names = [f"{root}/pristine/model.ckpt-2790692.index", f"{root}/{root}.tflite", f"{root}/{root}.pb"]
    else:  # edgetpu
        root = entry.releases[0].url.rsplit("/", 1)[1].removesuffix(".tgz")
        names = [f"{root}/{root}_{kind}.tflite" for kind in ("float", "int8", "uint8")]
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return names


@pytest.mark.parametrize("model_id", [e.id for e in load_catalog()
                                      if e.family == "edgetpu" or (e.family in ("v2", "v3") and e.quantized)])
def test_shipped_patterns_find_the_evidence_layout_without_searching(model_id, tmp_path):
    from zoo.fetching.roles import _by_pattern

    entry = load_catalog().get(model_id)
    names = _evidence_layout(entry, tmp_path)
    assert entry.archive_root == names[0].split("/")[0]
    for role in ("checkpoint", "tflite"):
        if entry.family == "edgetpu" and role == "checkpoint":
            continue  # its prefix is not documented
        assert _by_pattern(tmp_path, entry.files[role], role), (model_id, role, entry.files[role], names)
