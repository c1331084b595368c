"""`list`, `show`, `pick`, `frontier` through typer's runner and the installed console script."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from zoo.catalog.registry import default_catalog_path


def test_help_on_every_command_shows_an_example(cli):
    from mobilenet_zoo_cli.app import app
    import typer.main

    group = typer.main.get_command(app)
    assert {"list", "show", "pick", "frontier"} <= set(group.commands)
    for name in group.commands:
        code, out, _ = cli(name, "--help")
        assert code == 0 and "Example: mobilenet-zoo" in out, name
    code, out, _ = cli("--help")
    for flag in ("--catalog", "--cache-dir", "--mirror", "--offline"):
        assert flag in out


def test_version(cli):
    import zoo

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"mobilenet-zoo {zoo.__version__}"


def test_list_json_has_entry_keys(cli):
    code, out, _ = cli("list", "--json")
    data = json.loads(out)
    assert code == 0 and len(data) == 87
    assert {"id", "family", "width", "resolution", "quantized", "macs_m", "params_m", "top1", "top5", "url",
            "sha256", "size_bytes", "latency_ms", "cached"} <= set(data[0])


def test_list_filters_and_sort(cli):
    code, out, _ = cli("list", "--family", "v2", "--float", "--max-macs", "100", "--sort", "top1", "--json")
    ids = [d["id"] for d in json.loads(out)]
    assert ids[:2] == ["v2_0.5_224", "v2_1.0_128"] and all(i.startswith("v2_") and not i.endswith("_quant") for i in ids)
    code, out, _ = cli("list", "--width", "0.5", "--resolution", "160", "--json")
    assert {d["id"] for d in json.loads(out)} == {"v1_0.5_160", "v1_0.5_160_quant", "v2_0.5_160",
                                                   "v2_0.5_160_quant"}


def test_list_table_and_csv(cli):
    code, out, _ = cli("list", "--family", "edgetpu")
    lines = out.splitlines()  # piped: plain aligned text, a header and one line per model
    assert code == 0 and lines[0].split()[0] == "id" and len(lines) == 3 and "edgetpu_1.0_224_quant" in out
    code, out, _ = cli("list", "--csv", "--device", "pixel1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 87 and rows[0]["id"] and "latency_ms_pixel1" in rows[0]


def test_show(cli):
    code, out, _ = cli("show", "1.0_224")
    assert code == 0 and "v1_1.0_224" in out and "2018_02_22" in out and "pixel3-cpu4" in out
    code, out, _ = cli("show", "quantized_v2_224_140", "--json")
    data = json.loads(out)
    assert data["id"] == "v2_1.4_224_quant" and "quantized_v2_224_140" in data["accepted_names"]
    assert data["input_quantization"] == {"scale": 0.0078125, "zero_point": 128}
    assert data["preprocessing"]["central_crop"] == 0.875 and data["preprocessing"]["resize"] == [224, 224]
    assert "q = x / 0.0078125 + 128" in data["preprocessing"]["tflite_uint8_input"]


def test_pick_json_is_the_entry(cli):
    code, out, _ = cli("pick", "--max-macs", "300", "--quantized", "--json")
    assert code == 0 and json.loads(out)["id"] == "v3_large_1.0_224_quant"
    code, out, _ = cli("pick", "--max-latency-ms", "10", "--device", "pixel1")
    assert code == 0 and "v2_0.5_128" in out and "runners-up" in out and "why:" in out


def test_frontier(cli):
    code, out, _ = cli("frontier", "--cost", "size", "--json")
    sizes = [d["model_size_mb"] for d in json.loads(out)]
    assert code == 0 and sizes == sorted(sizes)
    code, out, _ = cli("pick", "--frontier", "--json")
    assert json.loads(out)[0]["id"] == "v2_0.35_96"


@pytest.mark.parametrize("args, code, words", [
    (["show", "v1_1.0_225"], 2, "did you mean"),
    (["pick", "--max-macs", "-3"], 2, "error: --max-macs must be >= 0, got -3"),
    (["pick", "--max-macs", "5"], 1, "nearest: v2_0.35_96 (MACs 11M > --max-macs 5)"),
    (["pick", "--min-top1", "101"], 2, "--min-top1 is a percentage"),
    (["pick", "--max-latency-ms", "5"], 2, "error: --max-latency-ms needs --device\nhint: e.g. --device pixel1,"),
    (["list", "--sort", "latency"], 2, "error: --sort latency needs --device"),
    (["pick", "--family", "v1", "--resolution", "100"], 1, "hint: relax --family / --quantized / --width"),
    (["pick", "--max-latency-ms", "5", "--device", "local"], 2, "run `mobilenet-zoo bench"),
    (["list", "--family", "v5"], 2, "unknown family"),
    (["frontier", "--cost", "latency"], 2, "needs --device"),
])
def test_bad_input_gives_message_and_exit_code(cli, args, code, words):
    exit_code, out, err = cli(*args)
    assert exit_code == code
    assert words in err and "Traceback" not in err + out


def test_bad_catalog_via_flag_and_env(cli, tmp_path):
    bad = tmp_path / "cat.yaml"
    bad.write_text(default_catalog_path().read_text().replace("family: v2", "family: v22", 1))
    code, out, err = cli("--catalog", str(bad), "list")
    assert code == 2 and str(bad) in err and "unknown family 'v22'" in err and "v2_1.4_224" in err
    code, out, err = cli("list", env={"MOBILENET_ZOO_CATALOG": str(bad)})
    assert code == 2 and "unknown family" in err and "Traceback" not in err


def test_private_catalog_is_used(cli, tmp_path):
    import yaml

    doc = yaml.safe_load(default_catalog_path().read_text())
    model = dict(doc["models"][0], id="acme_v1_private", aliases=["acme"])
    path = tmp_path / "private.yaml"
    path.write_text(yaml.safe_dump({"models": [model]}))
    code, out, _ = cli("--catalog", str(path), "show", "acme", "--json")
    assert code == 0 and json.loads(out)["id"] == "acme_v1_private"


from .conftest import console_script as _script  # noqa: E402


def test_console_script_as_real_subprocess(tmp_path):
    env = {**os.environ, "MOBILENET_ZOO_CACHE": str(tmp_path / "c")}
    done = subprocess.run([_script(), "pick", "--max-size-mb", "2", "--json"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model_size_mb"] <= 2
    done = subprocess.run([_script(), "show", "nope"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "unknown model 'nope'" in done.stderr and "Traceback" not in done.stderr


def test_light_commands_do_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from mobilenet_zoo_cli.app import app\n"
        "for args in (['list'], ['show', '1.0_224'], ['pick', '--max-macs', '100'], ['frontier']):\n"
        "    try:\n"
        "        app(args, prog_name='mobilenet-zoo')\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (args, e.code)\n"
        "heavy = sorted(m for m in ('tensorflow', 'numpy', 'requests', 'keras', 'ai_edge_litert', 'PIL',\n"
        "                           'matplotlib', 'urllib3') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY="
