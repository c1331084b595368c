"""Schema of the shipped catalog, and the loader's errors on bad catalogs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import zoo
from zoo.catalog.registry import FAMILIES, SCHEMA, default_catalog_path, load_catalog, parse_catalog
from zoo.errors import CatalogError

CATALOG = load_catalog(with_profile=False)
REQUIRED_JSON_KEYS = {"id", "family", "width", "resolution", "quantized", "macs_m", "params_m", "top1", "top5",
                      "url", "sha256", "size_bytes", "latency_ms", "input_size", "input_range",
                      "input_quantization", "num_classes", "input_node", "output_node", "files", "releases"}


def test_ships_every_upstream_model():
    assert len(CATALOG) == 87
    assert default_catalog_path().is_file()


@pytest.mark.parametrize("entry", CATALOG.entries, ids=lambda e: e.id)
def test_entry_schema(entry):
    assert entry.family in FAMILIES
    assert entry.id.startswith(entry.family + "_")
    assert entry.quantized == entry.id.endswith("_quant")
    assert f"_{entry.width:g}" in entry.id.replace("_1.0_", "_1_") or f"{entry.width}" in entry.id
    assert str(entry.resolution) in entry.id
    assert entry.macs_m > 0 and entry.params_m > 0
    assert entry.top1 is None or 0 < entry.top1 < 100
    assert entry.top5 is None or entry.top1 < entry.top5 < 100
    assert entry.url.startswith(("http://", "https://")) and entry.url.endswith(".tgz")
    assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    assert entry.input_size == (entry.resolution, entry.resolution, 3)
    assert entry.input_range == (-1.0, 1.0)
    assert entry.num_classes == 1001
    assert (entry.input_quantization is not None) == entry.quantized
    if entry.quantized:
        assert dict(entry.input_quantization) == {"scale": 0.0078125, "zero_point": 128}
    assert {"checkpoint", "frozen_graph", "tflite"} <= set(entry.files)
    assert entry.releases[0].url == entry.url and entry.releases[0].sha256 == entry.sha256
    assert entry.model_size_mb == pytest.approx(entry.params_m * (1 if entry.quantized else 4))
    assert REQUIRED_JSON_KEYS <= set(entry.to_dict())
    assert entry.family != "v3" or entry.variant in entry.id


def test_v1_float_models_have_two_releases():
    v1_float = [e for e in CATALOG if e.family == "v1" and not e.quantized]
    assert len(v1_float) == 16
    for entry in v1_float:
        assert [r.release for r in entry.releases] == ["2018_08_02", "2018_02_22"]
        assert "2018_08_02" in entry.url


def test_entries_are_immutable():
    entry = CATALOG.get("v1_1.0_224")
    with pytest.raises(Exception):
        entry.top1 = 99.0
    with pytest.raises(TypeError):
        entry.latency_ms["x"] = 1.0


def test_api_entry_points():
    catalog = zoo.load_catalog()
    assert catalog.get("1.0_224").id == "v1_1.0_224"
    assert catalog.pick(max_macs=300, quantized=True).chosen.id == "v3_large_1.0_224_quant"
    assert [e.id for e in catalog.frontier("macs")][:1] == ["v2_0.35_96"]
    assert all(e.family == "v2" for e in catalog.filter(family="v2"))


# ---------------------------------------------------------------- bad catalogs
GOOD = (Path(default_catalog_path()).read_text())


def _one_entry_catalog(**overrides) -> str:
    """A valid single-model catalog, with fields replaced or (value ...) removed."""
    import yaml

    doc = yaml.safe_load(GOOD)
    model = doc["models"][0]
    for key, value in overrides.items():
        if value is ...:
            model.pop(key)
        else:
            model[key] = value
    return yaml.safe_dump({"schema_version": 1, "models": [model]}, sort_keys=False)


def _error(text: str, tmp_path: Path) -> CatalogError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path, with_profile=False)
    err = info.value
    where = f"{path}:{err.line}" if err.line else str(path)
    assert str(err).startswith(where), str(err)  # the `file:line` users click on comes first
    return err


def test_malformed_yaml_names_file_and_line(tmp_path):
    err = _error("models:\n  - id: a\n    family: [v1\n", tmp_path)
    assert "malformed YAML" in err.message and err.line is not None


def test_duplicate_ids(tmp_path):
    err = _error(GOOD.replace("  - id: v1_1.0_192\n", "  - id: v1_1.0_224\n", 1), tmp_path)
    assert "duplicate id" in err.message and err.entry_id == "v1_1.0_224"
    assert err.line == GOOD.splitlines().index("  - id: v1_1.0_192") + 1


def test_unknown_family_names_entry_and_line(tmp_path):
    text = _one_entry_catalog(family="v9")
    err = _error(text, tmp_path)
    assert "unknown family 'v9'" in err.message and err.entry_id == "v1_1.0_224"
    assert err.line == text.splitlines().index("  family: v9") + 1


def test_cli_shows_file_line_and_entry_of_a_catalog_error(tmp_path, cli):
    """What the user sees through the CLI: `FILE:LINE, entry 'ID': problem`, exit 2, no traceback."""
    text = _one_entry_catalog(family="v9")
    bad = tmp_path / "mine.yaml"
    bad.write_text(text)
    line = text.splitlines().index("  family: v9") + 1
    code, out, err = cli("--catalog", str(bad), "list")
    assert code == 2 and out == ""
    assert f"{bad}:{line}, entry 'v1_1.0_224': unknown family 'v9'" in err
    assert "Traceback" not in err


def test_missing_field(tmp_path):
    err = _error(_one_entry_catalog(macs_m=...), tmp_path)
    assert "missing required field 'macs_m'" in err.message


def test_mistyped_field(tmp_path):
    err = _error(_one_entry_catalog(resolution="224px"), tmp_path)
    assert "'resolution' must be integer" in err.message


@pytest.mark.parametrize("overrides, words", [
    ({"sha256": "abc"}, "64 lowercase hex"),
    ({"top1": 170.9}, "percentage"),
    ({"params_m": -1}, "positive"),
    ({"quantized": "yes"}, "true/false"),
    ({"surprise": 1}, "unknown field 'surprise'"),
    ({"url": "ftp://x/y.tgz"}, "http(s) or file URL"),
    ({"size_bytes": 0}, "positive integer"),
])
def test_other_schema_errors(tmp_path, overrides, words):
    assert words in _error(_shorthand_catalog(**overrides), tmp_path).message


URL = "https://example.org/models/my_v1.tgz"


def _shorthand_catalog(**overrides) -> str:
    """One model whose download is given by the url/sha256/size_bytes shorthand."""
    return _one_entry_catalog(releases=..., **{"url": URL, **overrides})


@pytest.mark.parametrize("release, words", [
    ({"release": "r1", "url": URL, "sha256": "ABC"}, "release 'r1': sha256 must be 64 lowercase hex"),
    ({"release": "r1", "url": "ftp://x/y.tgz"}, "release 'r1': url must be an http(s) or file URL"),
    ({"release": "r1", "url": URL, "size_bytes": -5}, "release 'r1': size_bytes must be a positive integer"),
    ({"release": "r1"}, "each release needs release and url"),
    ({"release": "r1", "url": URL, "mirror": "x"}, "each release needs release and url"),
])
def test_release_list_errors_name_the_release(tmp_path, release, words):
    assert words in _error(_one_entry_catalog(releases=[release]), tmp_path).message


def test_download_is_given_exactly_one_way(tmp_path):
    """The release list is the one form; the url shorthand may replace it, never repeat it."""
    both = _one_entry_catalog(url=URL)
    err = _error(both, tmp_path)
    assert "either as `releases:` or as url/sha256/size_bytes, not both" in err.message
    assert err.line == both.splitlines().index(f"  url: {URL}") + 1
    neither = _one_entry_catalog(releases=...)
    assert "missing the download" in _error(neither, tmp_path).message
    assert "at least one tarball" in _error(_one_entry_catalog(releases=[]), tmp_path).message
    twice = [{"release": "a", "url": URL}, {"release": "a", "url": URL}]
    assert "share one name" in _error(_one_entry_catalog(releases=twice), tmp_path).message


def test_duplicate_key_in_mapping(tmp_path):
    text = _one_entry_catalog().replace("  family: v1\n", "  family: v1\n  family: v2\n", 1)
    assert "duplicate key 'family'" in _error(text, tmp_path).message


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "nope.yaml")


def test_parse_accepts_a_minimal_private_catalog():
    entries = parse_catalog(_shorthand_catalog(id="my_private_v1", sha256=None))
    (release,) = entries[0].releases
    assert entries[0].id == "my_private_v1" and release.release == "default"
    assert (release.url, release.sha256, release.size_bytes) == (URL, None, None)
    assert (entries[0].url, entries[0].sha256, entries[0].size_bytes) == (URL, None, None)


def test_schema_lists_every_entry_field():
    from dataclasses import fields

    from zoo.catalog import Entry

    shorthand = {"url", "sha256", "size_bytes"}  # kept on Entry as properties of the default release
    assert {f.name for f in fields(Entry)} | shorthand == set(SCHEMA)


def test_api_functions_survive_their_modules_being_imported():
    """`zoo.fetch`, `zoo.restore`, ... stay functions even after their modules are loaded."""
    import importlib

    for module in ("zoo.fetching.fetcher", "zoo.formats.base", "zoo.run.classification", "zoo.run.benchmark"):
        importlib.import_module(module)
    for name in ("fetch", "restore", "classify", "bench", "load_catalog"):
        assert callable(getattr(zoo, name)) and not isinstance(getattr(zoo, name), type(zoo)), name
