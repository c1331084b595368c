"""The Python API as a notebook user meets it: discoverable names, typed catalog queries,
a light import, and the version in what we send to servers."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import zoo
from zoo.errors import UsageError

CATALOG = zoo.load_catalog(with_profile=False)


def test_dir_lists_the_lazy_functions_without_importing_them():
    code = ("import sys, zoo; names = dir(zoo); "
            "assert {'fetch', 'restore', 'classify', 'bench', 'load_catalog', 'Catalog'} <= set(names), names; "
            "heavy = {'requests', 'numpy', 'tensorflow'} & set(sys.modules); assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert callable(zoo.fetch) and callable(zoo.restore)


def test_list_matches_patterns_in_natural_order():
    quant_v2 = CATALOG.list("v2_*_quant")
    assert quant_v2[:3] == ["v2_0.35_96_quant", "v2_0.35_128_quant", "v2_0.35_160_quant"]
    assert all(i.startswith("v2_") and i.endswith("_quant") for i in quant_v2)
    assert len(quant_v2) == sum(e.family == "v2" and e.quantized for e in CATALOG)
    assert CATALOG.list("V1_1.0_2??") == ["v1_1.0_224"]           # case-insensitive, ? is one char
    assert CATALOG.list() == sorted(CATALOG.ids, key=CATALOG.list().index) and len(CATALOG.list()) == len(CATALOG)
    assert CATALOG.list("resnet*") == []
    widths = [float(i.split("_")[1]) for i in CATALOG.list("v1_*_224")]
    assert widths == sorted(widths)                                # 0.25 < 0.5 < 0.75 < 1.0


@pytest.mark.parametrize("method", ["filter", "pick", "frontier"])
def test_catalog_queries_spell_out_their_keywords(method):
    params = inspect.signature(getattr(zoo.Catalog, method)).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert {"family", "quantized", "width", "resolution"} <= set(params)
    with pytest.raises(TypeError):
        getattr(CATALOG, method)(max_mac=10)                        # a typo is an error, not ignored


def test_typed_queries_agree_with_selection():
    from zoo.catalog.selection import Filters, frontier, pick

    assert CATALOG.pick(max_macs=300, quantized=True, runners_up=1).chosen.id == \
        pick(CATALOG.entries, Filters(max_macs=300, quantized=True)).chosen.id
    assert CATALOG.filter(family="v3", quantized=False) == Filters(family="v3", quantized=False).apply(CATALOG)
    assert CATALOG.frontier("params", family="v2") == frontier(CATALOG.filter(family="v2"), "params")
    with pytest.raises(UsageError):
        CATALOG.pick(max_macs=-1)


def test_user_agent_carries_the_package_version(fault_server, tmp_path):
    from zoo.fetching.download import download

    url = fault_server.add("/ua.bin", b"x" * 1000)
    part = tmp_path / "cache" / ".partial" / "ua@1.part"
    part.parent.mkdir(parents=True)
    download(url, part)
    (record,) = fault_server.stats("/ua.bin").records
    assert record.headers["User-Agent"].startswith(f"mobilenet-zoo/{zoo.__version__} ")


def test_errors_spell_hint_the_way_the_cli_does(cli):
    """`str(error)` in a notebook and the CLI's message use the same `hint:` line."""
    from zoo.errors import UnknownModelError

    with pytest.raises(UnknownModelError) as info:
        CATALOG.get("v1_1.0_22")
    assert "\nhint: " in str(info.value)
    code, _, err = cli("show", "v1_1.0_22")
    assert code == 2 and "hint: " in err and "Hint:" not in err


# ------------------------------------------------------------------ a notebook session, end to end
DATA = __import__("pathlib").Path(__file__).resolve().parent / "data"
TFLITE = DATA / "mobilenet_v1_0.25_128_quant.tflite"
MODEL_ID = "v1_0.25_128_quant"


class FakeTqdm:
    """What a notebook's tqdm class receives (the calls `hf_hub_download(tqdm_class=...)` makes)."""

    bars: list["FakeTqdm"] = []

    def __init__(self, *, total=None, desc=None, **kwargs):
        self.total, self.desc, self.kwargs, self.n, self.resets, self.closed = total, desc, kwargs, 0, 0, False
        FakeTqdm.bars.append(self)

    def update(self, n):
        assert n > 0 and not self.closed
        self.n += n

    def reset(self, total=None):
        self.n, self.total, self.resets = 0, total, self.resets + 1

    def close(self):
        self.closed = True


@pytest.fixture
def served_model(fault_server, tmp_path):
    """The vendored real .tflite as an upstream-shaped tarball on the loopback server, unpinned
    (so the first fetch trusts it on first use)."""
    from .archives import tar_gz
    from .fetch_helpers import model_entry, write_catalog

    tarball = tar_gz({f"./mobilenet_{MODEL_ID}.tflite": TFLITE.read_bytes()}, dirs=[], root_dir=True)
    url = fault_server.add("/models/v1.tgz", tarball)
    raw = model_entry(MODEL_ID, url, tarball, template_id=MODEL_ID, pinned=False)
    return zoo.load_catalog(write_catalog(tmp_path / "catalog.yaml", [raw]), with_profile=False), tarball


def test_notebook_session_with_the_typed_calls(served_model, fault_server, tmp_path):
    pytest.importorskip("ai_edge_litert")
    Image = pytest.importorskip("PIL.Image")
    import warnings

    import numpy as np

    from zoo.formats.tflite import TFLiteModel
    from .http_server import Fault

    catalog, tarball = served_model
    assert catalog.list("v1_*_quant") == [MODEL_ID]
    # the first answer breaks off, the second ignores Range: the bar rewinds instead of counting twice
    fault_server.add("/models/v1.tgz", tarball, faults=[Fault(drop_after=len(tarball) // 3), Fault(ignore_range=True)])
    FakeTqdm.bars = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = zoo.fetch(MODEL_ID, catalog=catalog, cache_dir=tmp_path / "cache", progress=FakeTqdm)
    (bar,) = FakeTqdm.bars
    assert (bar.desc, bar.total, bar.n, bar.closed) == (MODEL_ID, len(tarball), len(tarball), True)
    assert bar.resets == 1 and bar.kwargs["unit"] == "B"
    (tofu,) = caught
    assert tofu.category is zoo.TrustOnFirstUseWarning and issubclass(tofu.category, zoo.ZooWarning)
    assert "trusting this first download" in str(tofu.message) and tofu.filename == __file__  # the caller's line

    model = zoo.restore(MODEL_ID, "tflite", catalog=catalog, cache_dir=tmp_path / "cache")
    assert isinstance(model, TFLiteModel) and model.source.parent == path / "model"
    assert zoo.restore(path, catalog=catalog).source == model.source        # the directory fetch returned
    assert zoo.restore(path / "model", catalog=catalog).source == model.source

    cat = DATA / "cat.bmp"
    pixels = np.asarray(Image.open(cat).convert("RGB"))
    results = zoo.classify(model, [cat, Image.open(DATA / "bird.bmp"), pixels, pixels / 255.0], top=2)
    assert [r.image for r in results] == [str(cat), str(DATA / "bird.bmp"), "array[2]", "array[3]"]
    assert results[1].best.label == "chickadee"
    assert results[0].best == results[2].best                                # a file and its pixels agree
    # floats in [0, 1] preprocess to within 3e-7 of the uint8 path; the quantized model's input
    # rounding turns that into a few output steps, never another class
    assert results[3].best.index == results[0].best.index
    assert results[3].best.score == pytest.approx(results[0].best.score, abs=0.1)
    batch = zoo.classify(model, np.stack([pixels, pixels]), top=1)          # [N, H, W, 3] is N images
    assert [r.image for r in batch] == ["array[0]", "array[1]"] and batch[0].best == results[0].best
    assert results[0].to_json()["predictions"][0] == {"label": results[0].best.label,
                                                      "index": results[0].best.index, "score": results[0].best.score}

    labels = tmp_path / "labels.csv"  # the model's own answers as labels: top-1 must be 100%
    labels.write_text(f"{cat},{results[0].best.index}\n{DATA / 'bird.bmp'},{results[1].best.index}\n")
    measured = zoo.evaluate(model, labels)
    assert (measured.images, measured.top1, measured.id) == (2, 100.0, MODEL_ID)


def test_progress_true_draws_a_tqdm_auto_bar_and_callbacks_get_bytes(served_model, tmp_path, capsys):
    import warnings

    catalog, tarball = served_model
    with pytest.warns(zoo.TrustOnFirstUseWarning):
        zoo.fetch(MODEL_ID, catalog=catalog, cache_dir=tmp_path / "a", progress=True)
    err = capsys.readouterr().err
    assert MODEL_ID in err and "100%" in err                                 # tqdm.auto outside a notebook: text
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.fetch(MODEL_ID, catalog=catalog, cache_dir=tmp_path / "a", progress=lambda *a: seen.append(a))
        assert seen == []                                                    # a cache hit: no download, no warning
        warnings.simplefilter("ignore", zoo.TrustOnFirstUseWarning)          # filterable by its category
        zoo.fetch(MODEL_ID, catalog=catalog, cache_dir=tmp_path / "b", progress=lambda *a: seen.append(a))
    assert seen[-1][0].id == MODEL_ID and seen[-1][1:] == (len(tarball), len(tarball))
    assert capsys.readouterr().err == ""                                     # the library printed nothing
    with pytest.raises(TypeError, match="progress must be"):
        zoo.fetch(MODEL_ID, catalog=catalog, cache_dir=tmp_path / "c", progress="yes")


def test_evaluate_compare_finds_the_other_file_in_the_fetched_tarball_or_says_it_is_not_there(
        served_model, fault_server, tmp_path):
    """compare= on a catalog name: checked against the catalog before the fetch, and against the
    unpacked tarball before the first image is run (this tarball holds the .tflite only)."""
    pytest.importorskip("ai_edge_litert")
    from zoo.errors import RestoreError

    from .fetch_helpers import write_catalog

    catalog, _ = served_model
    data = tmp_path / "val" / "n02123045"
    data.mkdir(parents=True)
    (data / "cat.bmp").write_bytes((DATA / "cat.bmp").read_bytes())
    with pytest.raises(RestoreError) as fetched:
        zoo.evaluate(MODEL_ID, data.parent, compare="frozen", catalog=catalog, cache_dir=tmp_path / "cache")
    assert "compare='frozen'" in fetched.value.message and "beside the model evaluated" in fetched.value.hint
    assert fetched.value.params == ("compare",)

    raw = catalog.get(MODEL_ID).to_dict()
    for derived in ("model_size_mb", "url", "sha256", "size_bytes"):
        raw.pop(derived)
    raw["files"] = {role: name for role, name in raw["files"].items() if role != "frozen_graph"}
    lean = zoo.load_catalog(write_catalog(tmp_path / "lean.yaml", [raw]), with_profile=False)
    fault_server.reset_stats()
    with pytest.raises(RestoreError) as listed:
        zoo.evaluate(MODEL_ID, data.parent, compare="frozen", catalog=lean, cache_dir=tmp_path / "cache2")
    assert "its tarball has no frozen file" in listed.value.message
    assert fault_server.stats("/models/v1.tgz").requests == 0  # refused before any download
