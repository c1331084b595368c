"""`bench` times the real vendored model and records it; `plot` draws real PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo.catalog import load_catalog
from zoo.errors import UsageError

DATA = Path(__file__).resolve().parent / "data"
TFLITE = DATA / "mobilenet_v1_0.25_128_quant.tflite"
MODEL_ID = "v1_0.25_128_quant"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ bench
def test_timing_helpers_count_and_summarize():
    from zoo.run.benchmark import summarize, time_calls

    calls = []
    samples = time_calls(calls.append, "image", runs=7, warmup=3)
    assert len(calls) == 10 and len(samples) == 7 and all(s >= 0 for s in samples)
    median, p90 = summarize([float(v) for v in range(1, 11)])
    assert median == 5.5 and p90 == pytest.approx(9.1)


def test_bench_records_local_latency(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from zoo.run.benchmark import bench
    from zoo.formats import restore

    entry = load_catalog(with_profile=False).get(MODEL_ID)
    model = restore(DATA, "tflite", entry=entry, threads=1)
    seen = []
    results = bench([model], runs=5, warmup=1, progress=lambda *a: seen.append(a))
    task, done, total = seen[-1]
    assert (task.id, task.unit, done, total) == (MODEL_ID, "run", 5, 5)
    (row,) = results
    assert row.id == MODEL_ID and row.format == "tflite" and row.threads == 1
    assert 0 < row.median_ms <= row.p90_ms < 1000
    assert row.to_json() == {"id": MODEL_ID, "format": "tflite", "runtime": "litert", "threads": 1,
                             "precision": None, "median_ms": row.median_ms, "p90_ms": row.p90_ms,
                             "max_abs_dp": None, "top1_agreement": None}
    # conftest points MOBILENET_ZOO_PROFILE at a temp file; the catalog merges it in.
    latencies = load_catalog().get(MODEL_ID).latency_ms
    assert latencies["local"] == pytest.approx(row.median_ms, rel=1e-3)
    assert latencies["local-tflite-1t"] == pytest.approx(row.median_ms, rel=1e-3)
    assert "pixel3-cpu4" in latencies  # published figures stay


def test_local_is_the_latest_measurement_whatever_the_file_order(tmp_path):
    """`local` is the newest figure by `measured_at`, not the first or last key in the file."""
    from zoo.catalog.profile import read_local_latencies

    profile = tmp_path / "profile.json"
    records = {"local-tflite-2t": {"median_ms": 3.0, "measured_at": 2000.0},   # newest, listed first
               "local-ckpt-1t": {"median_ms": 9.0, "measured_at": 1000.0},
               "local-tflite-1t": {"median_ms": 5.0, "measured_at": 1500.0}}
    profile.write_text(json.dumps({"version": 1, "measurements": {MODEL_ID: records}}))
    devices = read_local_latencies(profile)[MODEL_ID]
    assert devices["local"] == 3.0
    assert devices["local-ckpt-1t"] == 9.0 and devices["local-tflite-1t"] == 5.0


def test_bench_records_the_models_own_thread_count(tmp_path):
    """A restored model keeps its threads: the row and the profile say 2, not the requested 1."""
    pytest.importorskip("ai_edge_litert")
    from zoo.run.benchmark import bench
    from zoo.formats import restore

    entry = load_catalog(with_profile=False).get(MODEL_ID)
    model = restore(DATA, "tflite", entry=entry, threads=2)
    (row,) = bench([model], threads=1, runs=2, warmup=0)
    assert row.threads == 2
    latencies = load_catalog().get(MODEL_ID).latency_ms
    assert "local-tflite-2t" in latencies and "local-tflite-1t" not in latencies


def test_bench_local_file_with_two_threads_and_json_cli(cli):
    pytest.importorskip("ai_edge_litert")
    code, out, err = cli("bench", str(TFLITE), "--threads", "2", "--runs", "3", "--warmup", "0", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["threads"] == 2 and row["format"] == "tflite"
    assert "local-tflite-2t" in load_catalog().get(MODEL_ID).latency_ms
    code, out, _ = cli("bench", str(TFLITE), "--runs", "2")
    assert code == 0 and MODEL_ID in out and "median ms" in out


def test_bench_argument_errors():
    from zoo.run.benchmark import bench

    with pytest.raises(UsageError, match="^runs must be at least 1, got 0") as info:  # the API's words
        bench([MODEL_ID], runs=0)
    assert info.value.params == ("runs",)
    with pytest.raises(UsageError, match="^warmup must be 0 or more"):
        bench([MODEL_ID], warmup=-1)
    with pytest.raises(UsageError, match="format"):
        bench([MODEL_ID], format="saved_model")
    with pytest.raises(UsageError, match="no tarball holds an onnx file"):  # onnx files come from export
        bench([MODEL_ID], format="onnx")


# ------------------------------------------------------------------ plot
def _check_png(path: Path, min_size=(800, 500)) -> None:
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= min_size[0] and img.size[1] >= min_size[1]


@pytest.mark.parametrize("cost", ["macs", "params", "size"])
def test_plot_every_static_cost(tmp_path, cost):
    pytest.importorskip("matplotlib")
    from zoo.catalog.plot import plot
    from zoo.catalog.selection import frontier

    catalog = load_catalog(with_profile=False)
    drawn = plot(catalog.entries, x=cost, out=tmp_path / "sub" / f"{cost}.png")
    _check_png(tmp_path / "sub" / f"{cost}.png")
    without_top1 = sum(e.top1 is None for e in catalog)
    assert drawn["plotted"] == len(catalog) - without_top1
    assert drawn["left_out_no_top1"] == without_top1
    assert drawn["frontier"] == [e.id for e in frontier(catalog.entries, cost)]


def test_plot_latency_needs_a_device_with_figures(tmp_path):
    pytest.importorskip("matplotlib")
    from zoo.catalog.plot import plot

    catalog = load_catalog(with_profile=False)
    with pytest.raises(UsageError, match="^x='latency' needs device\n"):
        plot(catalog.entries, x="latency", out=tmp_path / "x.png")
    with pytest.raises(UsageError, match="no model to plot"):
        plot(catalog.entries, x="latency", device="toaster", out=tmp_path / "x.png")
    with pytest.raises(UsageError, match=".png"):
        plot(catalog.entries, x="macs", out=tmp_path / "x.jpg")
    drawn = plot(catalog.entries, x="latency", device="pixel1", out=tmp_path / "pixel1.png")
    _check_png(tmp_path / "pixel1.png")
    assert drawn["left_out_no_cost"] > 0
    assert drawn["plotted"] + drawn["left_out_no_cost"] + drawn["left_out_no_top1"] == len(catalog)


def test_cli_plot_after_bench_uses_local_device(cli, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("ai_edge_litert")
    code, _, err = cli("plot", "--x", "latency", "--device", "local", "--out", str(tmp_path / "none.png"))
    assert code == 2 and "bench" in err
    assert cli("bench", str(TFLITE), "--runs", "2", "--json")[0] == 0
    out_png = tmp_path / "local.png"
    code, out, err = cli("plot", "--x", "latency", "--device", "local", "--out", str(out_png))
    assert code == 0, err
    assert ": 1 model, " in out
    _check_png(out_png, min_size=(100, 100))
    code, out, err = cli("plot", "--family", "v3", "--float", "--x", "params", "--out", str(tmp_path / "v3.png"))
    assert code == 0, err
    _check_png(tmp_path / "v3.png")


@pytest.mark.parametrize("ids", [["v1_1.0_224"], ["v1_1.0_224", "v1_0.25_128"], ["edgetpu_1.0_224_quant", "v2_0.35_96"]])
def test_plot_with_few_points_keeps_labels_and_legend_inside(tmp_path, ids):
    pytest.importorskip("matplotlib")
    from zoo.catalog.plot import plot

    catalog = load_catalog()
    drawn = plot([catalog.get(i) for i in ids], out=tmp_path / "few.png")
    assert drawn["labels_fit"] and (tmp_path / "few.png").stat().st_size > 0


def test_cli_plot_says_1_model(cli, tmp_path):
    pytest.importorskip("matplotlib")
    from .fetch_helpers import model_entry, write_catalog

    catalog = write_catalog(tmp_path / "c.yaml", [model_entry("v1_only", "https://example.invalid/x.tgz", b"x")])
    code, out, err = cli("--catalog", str(catalog), "plot", "-o", str(tmp_path / "one.png"))
    assert code == 0, err
    assert ": 1 model, frontier of 1" in out
