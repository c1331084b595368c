"""The catalog against the upstream reference tables: the figures must not drift.

The tables are vendored in tests/data/reference (sources: tests/data/SOURCES.md); when the
workplace copy in ../shared/reference exists, the vendored copy must equal it.
"""

from __future__ import annotations

import csv

import pytest

from zoo.catalog import load_catalog

from .conftest import DATA, SHARED

REFERENCE = DATA / "reference"
CATALOG = load_catalog(with_profile=False)


def _rows(name: str) -> list[dict]:
    with open(REFERENCE / name, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _num(text: str):
    return None if text == "" else float(text)


def test_every_reference_row_matches_a_release():
    rows = _rows("upstream_models.tsv")
    assert len(rows) == 103
    assert {r["id"] for r in rows} == set(CATALOG.ids)
    for row in rows:
        entry = CATALOG.get(row["id"])
        assert entry.id == row["id"]
        assert entry.family == row["family"]
        assert entry.width == float(row["width"])
        assert entry.resolution == int(row["resolution"])
        assert entry.quantized == (row["quantized"] == "true")
        assert entry.macs_m == _num(row["macs_m"])
        assert entry.params_m == _num(row["params_m"])
        assert entry.top1 == _num(row["top1"])
        assert entry.top5 == _num(row["top5"])
        release = entry.release(row["release"] or "default")
        assert release.url == row["url"]
        assert release.sha256 == (row["sha256"] or None)
        assert release.size_bytes == (int(row["size_bytes"]) if row["size_bytes"] else None)


def test_latencies_match_reference():
    rows = _rows("upstream_latency.tsv")
    expected: dict[str, dict[str, float]] = {}
    for row in rows:
        expected.setdefault(row["id"], {})[row["device"]] = float(row["ms"])
    for entry in CATALOG:
        assert dict(entry.latency_ms) == expected.get(entry.id, {}), entry.id


def test_derived_size_matches_published_tflite_sizes():
    """model_size_mb = params x 4 bytes (float) matches the hosted TFLite file sizes."""
    for row in _rows("upstream_tflite.tsv"):
        entry = CATALOG.get(row["id"])
        assert entry.model_size_mb == pytest.approx(float(row["tflite_size_mb"]), rel=0.15, abs=0.3), entry.id


@pytest.mark.skipif(not (SHARED / "reference").is_dir(), reason="../shared/reference exists only in the workplace")
@pytest.mark.parametrize("name", ["upstream_models.tsv", "upstream_latency.tsv", "upstream_tflite.tsv"])
def test_vendored_tables_equal_workplace_copy(name):
    assert (REFERENCE / name).read_bytes() == (SHARED / "reference" / name).read_bytes()
