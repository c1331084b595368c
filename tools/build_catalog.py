"""Regenerate catalog.yaml from the upstream reference tables.

    python tools/build_catalog.py tests/data/reference > catalog.yaml

The reference TSVs (copied from the workplace's shared/reference, sources in
tests/data/SOURCES.md) hold the published figures; this script only reshapes them and
adds what follows from the upstream tarball conventions (node names, file names).
catalog.yaml is the source of truth at run time; tests/test_catalog_upstream.py checks
that it still matches the tables. Added by hand since (not generated): each entry's
``layout_evidence`` and the sizes and digests found later.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from urllib.parse import urlparse

QUANT_INPUT = {"scale": 0.0078125, "zero_point": 128}
OUTPUT_NODES = {
    "v1": "MobilenetV1/Predictions/Reshape_1",
    "v2": "MobilenetV2/Predictions/Reshape_1",
    "v3": "MobilenetV3/Predictions/Softmax",
    "edgetpu": "Softmax",  # ck-mlperf's EdgeTPU package meta (sources disagree; loaders read the graph's own)
}
QUANT_V2_OUTPUT = "MobilenetV2/Predictions/Softmax"  # ck-mlperf commit f326124


def _num(text: str):
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def _stem(url: str) -> str:
    name = Path(urlparse(url).path).name
    return name[: -len(".tgz")] if name.endswith(".tgz") else name


def _files(family: str, stem: str) -> tuple[str, dict[str, str]]:
    """(archive_root, role -> path inside the unpacked archive), per upstream layout."""
    if family in ("v1", "v2") and not stem.startswith("quantized_"):
        return ".", {
            "checkpoint": f"{stem}.ckpt",
            "frozen_graph": f"{stem}_frozen.pb",
            "tflite": f"{stem}.tflite",
            "eval_graph": f"{stem}_eval.pbtxt",
            "info": f"{stem}_info.txt",
        }
    # v2 uint8, v3 and EdgeTPU tarballs hold one top-level directory (sources: tests/data/SOURCES.md,
    # "Tarball layouts"). v2 uint8's is named v2_<res>_<depth>, without the tarball's "quantized_".
    if stem.startswith("quantized_"):
        root = stem.removeprefix("quantized_")
        return root, {"checkpoint": f"{root}/model.ckpt-*", "frozen_graph": f"{root}/*.pb",
                      "tflite": f"{root}/model.tflite"}
    if family == "v3":
        sets = "ema/model-*" if stem.endswith("_float") else "pristine/model.ckpt-*"
        return stem, {"checkpoint": f"{stem}/{sets}", "frozen_graph": f"{stem}/*.pb", "tflite": f"{stem}/*.tflite"}
    return stem, {"checkpoint": f"{stem}/model.ckpt-*", "frozen_graph": f"{stem}/*.pb",
                  "tflite": f"{stem}/{stem}_*.tflite"}  # EdgeTPU: _float, _int8 and _uint8


def _q(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if text and all(c.isalnum() or c in "._-/:" for c in text) and not text[0].isdigit() and text not in ("null", "true", "false", "yes", "no", "on", "off"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build(reference: Path) -> str:
    with open(reference / "upstream_models.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    with open(reference / "upstream_latency.tsv", newline="") as fh:
        latency_rows = list(csv.DictReader(fh, delimiter="\t"))
    latency: dict[str, dict[str, float]] = {}
    for row in latency_rows:
        latency.setdefault(row["id"], {})[row["device"]] = _num(row["ms"])

    order: list[str] = []
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        if row["id"] not in by_id:
            order.append(row["id"])
        by_id.setdefault(row["id"], []).append(row)

    out = [
        "# mobilenet-zoo catalog: every published TF MobileNet (v1, v2, v3, EdgeTPU).",
        "# Figures are upstream's, unchanged (see tests/data/SOURCES.md for where each table",
        "# comes from). Generated once by tools/build_catalog.py; edit by hand from here on.",
        "# model_size_mb is derived (params_m * 4 float, params_m * 1 quantized), not stored.",
        "schema_version: 1",
        "models:",
    ]
    for model_id in order:
        releases = by_id[model_id]
        first = releases[0]
        family = first["family"]
        quantized = first["quantized"] == "true"
        variant = None
        if family == "v3":
            variant = model_id.split("_")[1] + ("_minimalistic" if "minimalistic" in model_id else "")
        stem = _stem(first["url"])
        archive_root, files = _files(family, stem)
        res = int(first["resolution"])
        fields = [
            ("id", model_id), ("family", family), ("variant", variant),
            ("width", float(first["width"])), ("resolution", res), ("quantized", quantized),
            ("macs_m", _num(first["macs_m"])), ("params_m", _num(first["params_m"])),
            ("top1", _num(first["top1"])), ("top5", _num(first["top5"])),
        ]
        out.append(f"  - id: {_q(model_id)}")
        for key, value in fields[1:]:
            out.append(f"    {key}: {_q(value)}")
        out.append("    releases:")
        for rel in releases:
            out.append(f"      - release: {_q(rel['release'] or 'default')}")
            out.append(f"        url: {_q(rel['url'])}")
            out.append(f"        sha256: {_q(rel['sha256'] or None)}")
            out.append(f"        size_bytes: {_q(_num(rel['size_bytes']))}")
            if rel["digest_source"]:
                out.append(f"        digest_source: {_q(rel['digest_source'])}")
        lat = latency.get(model_id, {})
        if lat:
            out.append("    latency_ms:")
            for device, ms in lat.items():
                out.append(f"      {device}: {_q(ms)}")
        else:
            out.append("    latency_ms: {}")
        out.append(f"    input_size: [{res}, {res}, 3]")
        out.append("    input_range: [-1.0, 1.0]")
        if quantized:
            out.append(f"    input_quantization: {{scale: {QUANT_INPUT['scale']}, zero_point: {QUANT_INPUT['zero_point']}}}")
        else:
            out.append("    input_quantization: null")
        out.append("    num_classes: 1001")
        quantized_v2 = stem.startswith("quantized_")
        out.append(f"    input_node: {'images' if family == 'edgetpu' else 'input'}")
        out.append(f"    output_node: {_q(QUANT_V2_OUTPUT if quantized_v2 else OUTPUT_NODES[family])}")
        out.append(f"    archive_root: {_q(archive_root)}")
        out.append("    files:")
        for role, path in files.items():
            out.append(f"      {role}: {_q(path)}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(build(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/reference")))
