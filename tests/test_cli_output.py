"""Output that fits: terminals of 60 columns, pipes, scripts (exit codes, JSON), through the console script."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from zoo.catalog import load_catalog

from .conftest import console_script
from .terminal import plain, run_in_pty


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The console script into pipes (stdout and stderr are not terminals)."""
    return subprocess.run([console_script(), *args], capture_output=True, text=True, env=env, timeout=120)


def test_list_on_60_columns_never_cuts_an_id():
    code, shown, _ = run_in_pty([console_script(), "list", "--device", "pixel1"], columns=60)
    lines = plain(shown).splitlines()
    assert code == 0
    assert all(len(line) <= 60 for line in lines), max(lines, key=len)
    ids = {line.split()[0] for line in lines[3:] if line.strip()}
    assert ids == set(load_catalog().ids)
    header = lines[1].split()
    assert header[0] == "id" and "top1" in header and "pixel1" in header  # the important columns stay
    assert "family" not in header and "hidden" in lines[0]  # the redundant ones go first


def test_list_is_plain_aligned_text_in_a_pipe():
    result = run("list", "--family", "edgetpu")
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and "\x1b[" not in result.stdout and "─" not in result.stdout
    assert lines[0].split()[:3] == ["id", "family", "width"] and len(lines) == 3
    # aligned: every column starts at the same offset on every line
    assert len({line.index("0.75") if "0.75" in line else line.index("1.0") for line in lines[1:]}) == 1
    tsv = run("list", "--family", "edgetpu", "--tsv").stdout.splitlines()
    assert tsv[0].split("\t")[0] == "id" and tsv[1].split("\t")[0] == "edgetpu_0.75_224_quant"


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--csv"], ["--tsv"]])
def test_same_exit_code_whatever_the_format(fmt):
    result = run("list", "-r", "225", *fmt)
    assert result.returncode == 1, fmt
    assert "no model matches" in result.stderr
    if fmt == ["--json"]:
        assert json.loads(result.stdout) == []
    nothing = run("pick", "--max-macs", "1", *(["--json"] if fmt == ["--json"] else []))
    assert nothing.returncode == 1 and "Traceback" not in nothing.stderr


def test_list_has_one_way_to_ask_for_json():
    assert run("list", "--format", "json").returncode == 2
    assert len(json.loads(run("list", "--json").stdout)) == len(load_catalog())


def test_show_unknown_release_fails_like_fetch():
    shown = run("show", "v1_1.0_224@1999_01_01")
    fetched = run("fetch", "v1_1.0_224@1999_01_01")
    assert shown.returncode == fetched.returncode == 2
    assert shown.stderr == fetched.stderr and "v1_1.0_224@2018_02_22" in shown.stderr
    ok = run("show", "v1_1.0_224@2018_02_22")
    assert ok.returncode == 0 and "release 2018_02_22 (chosen)" in ok.stdout


def test_show_never_hard_wraps_urls_or_digests():
    entry = load_catalog().get("v2_1.0_224")
    code, shown, _ = run_in_pty([console_script(), "show", entry.id], columns=60)
    text = plain(shown)
    assert code == 0 and entry.url in text and entry.sha256 in text  # each on one line, whole


def test_pick_json_carries_reason_runners_up_and_note():
    data = json.loads(run("pick", "--max-macs", "300", "--json").stdout)
    assert data["id"] == "v3_large_1.0_224" and data["reason"].startswith("highest top-1")
    assert [r["id"] for r in data["runners_up"]] == ["v3_large_0.75_224", "v2_1.0_160", "v2_0.75_192"]
    assert "no published top-1" in data["note"] and "v2_1.0_224_quant" in data["unranked"]
    assert data["cached"] is False


def test_pick_id_only():
    for flag in ("-q", "--id-only"):
        result = run("pick", "--max-macs", "300", flag)
        assert result.returncode == 0 and result.stdout == "v3_large_1.0_224\n" and result.stderr == ""


def test_numbers_look_like_the_model_names():
    lines = run("list", "--family", "v1", "--resolution", "224", "--float").stdout.splitlines()
    by_id = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_id["v1_1.0_224"][2] == "1.0" and by_id["v1_0.75_224"][2] == "0.75"
    assert by_id["v1_0.5_224"][-2:] == ["63.3", "84.9"]  # top-1 / top-5 with one decimal
    assert by_id["v1_0.5_224"][5:7] == ["1.34", "5.4"]  # params M, MB


def test_catalog_copy_is_used_and_untrusted(tmp_path):
    """The parsed copy speeds up loading but a damaged, stale or foreign copy never wins."""
    import shutil

    from zoo.catalog import parsed_copy as catalog_cache
    from zoo.catalog.registry import default_catalog_path

    source = tmp_path / "catalog.yaml"
    shutil.copy(default_catalog_path(), source)
    first = load_catalog(source, with_profile=False)
    copy = catalog_cache.cache_file(source.resolve())
    assert copy.is_file() and first.get("v1_1.0_224").top1 == 70.9
    good = copy.read_bytes()

    # a valid copy is used: a change only in the copy shows (proves the copy is read at all)
    data = json.loads(good)
    data["models"][0]["top1"] = 12.5
    copy.write_text(json.dumps(data))
    assert load_catalog(source, with_profile=False).get("v1_1.0_224").top1 == 12.5
    # ... but a copy that fails validation, is not JSON, or has another shape is ignored
    for damaged in (b"{not json", b"[]", json.dumps({**data, "models": [{"id": 3}]}).encode(),
                    json.dumps({**data, "models": "x"}).encode(), good[: len(good) // 2]):
        copy.write_bytes(damaged)
        assert load_catalog(source, with_profile=False).get("v1_1.0_224").top1 == 70.9
    # an edit to the YAML that keeps its size and mtime still invalidates the copy
    load_catalog(source, with_profile=False)
    st = source.stat()
    text = source.read_text()
    source.write_text(text.replace("top1: 70.9", "top1: 70.8", 1))
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source.stat().st_size == st.st_size
    assert load_catalog(source, with_profile=False).get("v1_1.0_224").top1 == 70.8
    # the copy lives in this user's private state folder, never in a (possibly shared) model cache
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.json"))
    assert copy.parent.parent == Path(os.environ["MOBILENET_ZOO_PROFILE"]).parent
    assert copy.stat().st_mode & 0o777 == 0o600
    # a copy another user could have written (group/world-writable), or a link, is ignored
    load_catalog(source, with_profile=False)
    data = json.loads(copy.read_bytes())
    data["models"][0]["top1"] = 12.5
    copy.write_text(json.dumps(data))
    copy.chmod(0o620)
    assert load_catalog(source, with_profile=False).get("v1_1.0_224").top1 == 70.8
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps(data))
    planted.chmod(0o600)
    copy.unlink()
    copy.symlink_to(planted)
    assert load_catalog(source, with_profile=False).get("v1_1.0_224").top1 == 70.8
    # an unwritable state folder costs only the speed-up
    os.environ["MOBILENET_ZOO_PROFILE"] = str(tmp_path / "file-not-dir" / "profile.json")
    (tmp_path / "file-not-dir").write_text("")
    assert len(load_catalog(source, with_profile=False)) == len(first)


def test_hints_keep_the_release_and_never_suggest_fetching_a_cached_model(cli, fault_server, tmp_path):
    code, _, err = cli("--offline", "fetch", "v1_1.0_224@2018_02_22")
    assert code != 0 and "mobilenet-zoo fetch v1_1.0_224@2018_02_22`" in err
    code, _, err = cli("--offline", "fetch", "v1_1.0_224")
    assert "mobilenet-zoo fetch v1_1.0_224`" in err  # the default release needs no suffix

    from .fetch_helpers import serve_models, v1_tarball

    catalog, _ = serve_models(fault_server, tmp_path, [("v1_x", v1_tarball("x"))])
    code, out, err = cli("--catalog", str(catalog), "pick")
    assert code == 0 and "fetch it: mobilenet-zoo fetch v1_x" in err
    assert cli("--catalog", str(catalog), "fetch", "v1_x")[0] == 0
    code, out, err = cli("--catalog", str(catalog), "pick")
    assert code == 0 and "fetch" not in err and "cached: " in err


def test_help_has_plain_placeholders_and_text_for_every_option(cli):
    import re

    import typer.main

    from mobilenet_zoo_cli.app import app

    group = typer.main.get_command(app)
    # typer's type names (<int>, <list[str]>, <int range>), not a choice list such as <int8> or <tflite|ckpt>
    internal = re.compile(r"(?<!/)<(str|int|float|bool|path|list|text|int range|float range|tuple)(?!\w)[^>|]*>",
                          re.I)

    def walk(command, path):
        code, out, _ = cli(*path, "--help", env={"COLUMNS": "120"})
        assert code == 0 and not internal.search(out), (path, internal.search(out))
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert (param.help or "").strip(), f"{' '.join(path) or 'global'} {param.opts} has no help"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(group, [])


@pytest.mark.parametrize("command", ["finetune", "export", "eval", "fetch"])
def test_help_on_60_columns_shows_every_option_name_whole(command):
    import typer.main

    from mobilenet_zoo_cli.app import app

    (sub,) = [c for name, c in typer.main.get_command(app).commands.items() if name == command]
    code, out, _ = run_in_pty([console_script(), command, "--help"], columns=60)
    text = plain(out)
    assert code == 0 and "…" not in text, text
    for param in sub.params:
        for opt in param.opts if param.param_type_name == "option" else ():
            assert opt in text, f"{command} --help on 60 columns lost {opt}"
    assert max(len(line) for line in text.splitlines()) <= 60


def test_help_on_a_wide_terminal_keeps_rich_and_the_user_can_choose():
    wide = plain(run_in_pty([console_script(), "finetune", "--help"], columns=120)[1])
    assert "╭" in wide and "--feature-runtime" in wide  # rich's panels
    forced = plain(run_in_pty([console_script(), "finetune", "--help"], columns=60,
                              env={**os.environ, "TYPER_USE_RICH": "1"})[1])
    assert "╭" in forced


def test_output_into_a_closed_pipe_is_quiet():
    proc = subprocess.run(f"'{console_script()}' list | head -1", shell=True, capture_output=True, text=True)
    assert proc.stdout.startswith("id ") and proc.stderr == ""


def test_cache_ls_total_and_cache_path_of_a_model(cli, fault_server, tmp_path):
    from .fetch_helpers import serve_models, v1_tarball

    # file names as upstream's v1_1.0_224 (the catalog entries are copies of it)
    catalog, _ = serve_models(fault_server, tmp_path, [("v1_a", v1_tarball("1.0_224")), ("v1_b", v1_tarball("b"))])
    base = ("--catalog", str(catalog))
    assert cli(*base, "fetch", "v1_a", "v1_b")[0] == 0
    code, out, _ = cli(*base, "cache", "ls")
    sizes = [row["size_bytes"] for row in json.loads(cli(*base, "cache", "ls", "--json")[1])]
    from zoo._util.units import format_bytes

    assert code == 0 and f"total: 2 entries, {format_bytes(sum(sizes))} in " in out
    code, out, _ = cli(*base, "cache", "path", "v1_a")
    files = dict(line.split("\t") for line in out.splitlines())
    assert code == 0 and files["checkpoint"].endswith(".ckpt") and os.path.exists(files["checkpoint"] + ".index")
    assert os.path.isfile(files["frozen_graph"])
    code, out, _ = cli(*base, "cache", "path", "v1_a", "--file", "frozen_graph")
    assert code == 0 and out.strip() == files["frozen_graph"]
    code, _, err = cli("cache", "path", "v1_1.0_224@2018_02_22")
    assert code == 1 and "fetch v1_1.0_224@2018_02_22`" in err


@pytest.mark.tf
def test_classify_directories_skip_errors_and_compact(tmp_path):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("PIL")
    import shutil

    from .conftest import DATA

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(DATA / "cat.bmp", photos / "b_cat.bmp")
    shutil.copy(DATA / "bird.bmp", photos / "a_bird.bmp")
    (photos / "c_broken.png").write_bytes(b"not a png")
    model = str(DATA / "mobilenet_v1_0.25_128_quant.tflite")

    strict = run("classify", model, str(photos))
    assert strict.returncode == 2 and "c_broken.png" in strict.stderr and strict.stdout == ""
    (photos / "notes.txt").write_text("not an image suffix: named before any model runs")
    stray = run("classify", model, str(photos))
    assert stray.returncode == 2 and "notes.txt" in stray.stderr and "--skip-errors" in stray.stderr
    (photos / "notes.txt").unlink()

    result = run("classify", model, str(photos), "--skip-errors", "--compact", "-k", "2")
    lines = result.stdout.splitlines()
    assert result.returncode == 1 and len(lines) == 2  # one line per readable image, sorted by name
    assert lines[0].startswith(str(photos / "a_bird.bmp")) and "chickadee (0." in lines[0]
    assert lines[1].startswith(str(photos / "b_cat.bmp")) and lines[1].count("(") == 2
    assert "c_broken.png: not an image" in result.stderr and "1 of 3 images could not be read" in result.stderr

    data = json.loads(run("classify", model, str(photos), "--skip-errors", "--json").stdout)
    assert [Path(d["image"]).name for d in data] == ["a_bird.bmp", "b_cat.bmp", "c_broken.png"]
    assert "error" in data[2] and data[0]["predictions"][0]["label"] == "chickadee"
    assert run("classify", model, str(tmp_path / "empty-dir-missing")).returncode == 2


def test_shell_completion_completes_commands_and_model_names():
    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "_MOBILENET_ZOO_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        return subprocess.run([console_script()], env=env, capture_output=True, text=True).stdout.split()

    assert complete("mobilenet-zoo show v2_1.4", 2) == ["v2_1.4_224", "v2_1.4_224_quant"]
    assert complete("mobilenet-zoo fetch v1_1.0_224@2018_0", 2) == ["v1_1.0_224@2018_08_02", "v1_1.0_224@2018_02_22"]
    assert "v3_small_1.0_224" in complete("mobilenet-zoo classify v3_sm", 2)
    assert complete("mobilenet-zoo cac", 1) == ["cache"]
    help_text = subprocess.run([console_script(), "--help"], capture_output=True, text=True).stdout
    assert "--install-completion" in help_text
