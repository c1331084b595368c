"""One formatter for every error the CLI shows (cli/errors.py), API words vs flag words,
and global options passed as a value (never written into the environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenet_zoo_cli.errors import describe, flag, report, spell_flags
from zoo import config
from zoo.errors import (CatalogError, DownloadError, IntegrityError, OfflineError, UnexpectedError, UsageError,
                        ZooError)

from .terminal import plain, run_in_pty

SCRIPT = str(Path(sys.executable).with_name("mobilenet-zoo"))


# ------------------------------------------------------------------ API parameter -> flag
@pytest.mark.parametrize("text, params, expected", [
    ("max_macs must be >= 0, got -1", ("max_macs",), "--max-macs must be >= 0, got -1"),
    ("max_latency_ms needs device", ("max_latency_ms", "device"), "--max-latency-ms needs --device"),
    ("e.g. device='pixel1', or device='local'", ("device",), "e.g. --device pixel1, or --device local"),
    ("skip_errors=True counts them", ("skip_errors",), "--skip-errors counts them"),
    ("no model matches family=v2, quantized=False", ("family", "quantized"), "no model matches --family v2, --float"),
    ("archive x.tgz: no such file", ("archive",), "--from x.tgz: no such file"),
    # only the listed names, whole words, and never inside a `command` the hint quotes
    ("top-1 72% < min_top1 75", ("min_top1",), "top-1 72% < --min-top1 75"),
    ("see `mobilenet-zoo list --devices` for a device", ("device",), "see `mobilenet-zoo list --devices` for a --device"),
    ("threads must be at least 1 (threads_max 4)", ("threads",), "--threads must be at least 1 (threads_max 4)"),
    ("max_macs must be >= 0", (), "max_macs must be >= 0"),
    # never inside a path or a file name that happens to contain the word
    ("data /srv/data: 2 files in data/x are not images (see data.csv)", ("data",),
     "--data /srv/data: 2 files in data/x are not images (see data.csv)"),
    ("pass data.", ("data",), "pass --data."),
])
def test_spell_flags(text, params, expected):
    assert spell_flags(text, params) == expected


def test_flag_spelling():
    assert flag("max_size_mb") == "--max-size-mb" and flag("batch_size") == "--batch-size"
    assert flag("archive") == "--from"


# The library's own words: each bad argument is named as its parameter, with no CLI flag in sight.
def _api_errors():
    from zoo.data.images import check_crop
    from zoo.catalog.selection import Filters, sort_entries

    return {
        "max_macs": lambda: Filters(max_macs=-1),
        "min_top1": lambda: Filters(min_top1=120),
        "max_latency_ms": lambda: Filters(max_latency_ms=5),
        "max_size_mb": lambda: Filters(max_size_mb=float("nan")),
        "sort": lambda: sort_entries([], "latency"),
        "crop": lambda: check_crop(1.5),
    }


@pytest.mark.parametrize("param", sorted(_api_errors()))
def test_api_errors_speak_api_and_name_their_parameter(param):
    with pytest.raises(UsageError) as info:
        _api_errors()[param]()
    error = info.value
    assert param in error.params and param in error.message
    assert "--" not in error.message + (error.hint or "")
    cli_words = spell_flags(error.message, error.params)
    assert flag(param) in cli_words and f" {param}" not in f" {cli_words}"


# ------------------------------------------------------------------ one table, one formatter
def test_describe_maps_each_error_type_once():
    assert describe(UsageError("x must be 1", params=("x",))) == ("--x must be 1", None, 2)
    assert describe(CatalogError("bad", path="c.yaml", line=3)).message == "c.yaml:3: bad"
    assert describe(OfflineError("not cached", "go online")) == ("not cached", "go online", 1)
    assert describe(DownloadError("refused", url="http://h/x.tgz")).exit_code == 1
    assert describe(KeyboardInterrupt()) == ("interrupted", None, 130)
    full = OSError(28, "No space left on device", "/c/x")
    assert describe(full) == ("cannot write /c/x: No space left on device",
                              "free some disk space or use another location", 1)
    missing = ModuleNotFoundError("no", name="tensorflow.python")
    assert describe(missing, "restore").message == "`restore` needs tensorflow, which is not installed"
    assert describe(ModuleNotFoundError("no", name="yaml")).exit_code == 3  # not an optional runtime: a bug
    bug = describe(RuntimeError("boom"))
    assert bug.exit_code == 3 and bug.message == "unexpected RuntimeError: boom" and "--debug" in bug.hint


def test_a_bug_in_one_model_of_several_keeps_its_cause():
    cause = KeyError("files")
    error = UnexpectedError("v1_1.0_224", cause)
    assert error.cause is cause and error.__cause__ is cause and error.exit_code == 3
    assert describe(error) == ("[v1_1.0_224] unexpected KeyError: 'files'",
                               "rerun with --debug for the traceback, and please report it", 3)


def test_report_prints_the_traceback_only_when_debugging(capsys):
    try:
        raise UsageError("runs must be at least 1, got 0", params=("runs",))
    except UsageError as exc:
        error = exc
    assert report(error, debug=False) == 2
    err = capsys.readouterr().err
    assert err == "error: --runs must be at least 1, got 0\n"
    assert report(error, debug=True) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("error: --runs must be at least 1, got 0\n")
    assert report(UnexpectedError("m", _raised(ValueError("inner"))), debug=True, message=False) == 3
    err = capsys.readouterr().err
    assert "ValueError: inner" in err and "error:" not in err  # the bug's own traceback; the message is elsewhere


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_error_fields_come_from_constructors():
    error = IntegrityError("bad bytes", model_id="m", url="http://h/m.tgz", expected_sha256="a" * 64,
                           actual_sha256="b" * 64, expected_size=10, actual_size=9)
    assert (error.model_id, error.url, error.expected_size, error.actual_size) == ("m", "http://h/m.tgz", 10, 9)
    assert error.expected_sha256 == "a" * 64 and error.actual_sha256 == "b" * 64
    assert ZooError("x").params == () and IntegrityError("x").url is None


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if plain(line).startswith(("error:", "hint:"))]


def test_per_model_and_whole_command_errors_look_the_same_on_a_terminal(tmp_path):
    """`fetch` reports per model and goes on, `restore` lets the error end the command, `mirror`
    has its own loop: all three print through the one formatter (same colours, same layout)."""
    env = {**os.environ, "MOBILENET_ZOO_CACHE": str(tmp_path / "cache"), "MOBILENET_ZOO_OFFLINE": "1"}
    code_fetch, fetch_out, _ = run_in_pty([SCRIPT, "fetch", "v1_0.25_128"], env=env)
    code_restore, restore_out, _ = run_in_pty([SCRIPT, "restore", "v1_0.25_128"], env=env)
    code_mirror, mirror_out, _ = run_in_pty([SCRIPT, "mirror", str(tmp_path / "m"), "v1_0.25_128"], env=env)
    assert code_fetch == code_restore == code_mirror == 1
    fetch_lines, restore_lines, mirror_lines = (_error_lines(o) for o in (fetch_out, restore_out, mirror_out))
    assert len(fetch_lines) == 2 and fetch_lines == restore_lines  # byte for byte, escapes included
    assert "\x1b[" in fetch_lines[0] and plain(fetch_lines[0]).startswith("error: v1_0.25_128")
    assert len(mirror_lines) == 2
    for ours, theirs in zip(mirror_lines, fetch_lines):  # the same styled prefix
        assert ours.split(":")[0] == theirs.split(":")[0]


def test_debug_shows_the_traceback_of_a_per_model_failure(tmp_path):
    env = {**os.environ, "MOBILENET_ZOO_CACHE": str(tmp_path / "cache")}
    args = [SCRIPT, "--offline", "fetch", "v1_0.25_128"]
    quiet = subprocess.run(args, env=env, capture_output=True, text=True)
    loud = subprocess.run([SCRIPT, "--debug", *args[1:]], env=env, capture_output=True, text=True)
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr and "OfflineError" in loud.stderr
    assert loud.stderr.endswith(quiet.stderr)  # the traceback first, then the very same message


@pytest.mark.parametrize("args, words", [
    (["pick", "--max-size-mb", "-1"], "error: --max-size-mb must be >= 0, got -1"),
    (["frontier", "--cost", "latency"], "error: --cost latency needs --device"),
    (["fetch", "--from", "no-such.tgz", "v1_0.25_128"], "error: --from no-such.tgz: no such file"),
    (["classify", "v1_0.25_128", "x.png", "--crop", "1.5"], "error: --crop must be a fraction in (0, 1]"),
])
def test_cli_errors_speak_flags(cli, args, words):
    code, out, err = cli(*args)
    assert code == 2 and words in err, err


# ------------------------------------------------------------------ global options are a value
def test_global_options_never_reach_the_environment(tmp_path):
    from typer.testing import CliRunner

    from mobilenet_zoo_cli.app import app

    before = dict(os.environ)
    chosen = tmp_path / "elsewhere"
    args = ["--cache-dir", str(chosen), "--offline", "--quiet", "--mirror", str(tmp_path / "m"), "cache", "path"]
    try:  # not the `cli` fixture: that one would put the environment back and hide a write
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        after = dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(before)
    assert result.exit_code == 0 and result.stdout.strip() == str(chosen)
    ours = {k: v for k, v in after.items() if k.startswith("MOBILENET_ZOO_")}
    assert ours == {k: v for k, v in before.items() if k.startswith("MOBILENET_ZOO_")}  # nothing written
    assert config.cache_dir() != chosen and not config.offline() and config.mirrors() == []  # overrides ended


def test_config_overrides_win_for_one_block_and_nest(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_CACHE, str(tmp_path / "env"))
    with config.overrides(cache_dir=tmp_path / "a", offline=True):
        assert config.cache_dir() == tmp_path / "a" and config.offline()
        with config.overrides(mirrors=["file:///m"]):
            assert config.mirrors() == ["file:///m"] and config.cache_dir() == tmp_path / "a"
        assert config.mirrors() == []
    assert config.cache_dir() == tmp_path / "env" and not config.offline()
    assert os.environ[config.ENV_CACHE] == str(tmp_path / "env")
