"""Progress and messages through the real console script: a pty for the bar, pipes for log lines."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import DATA, console_script
from .fetch_helpers import serve_models, v1_tarball
from .http_server import Fault
from .terminal import plain, run_in_pty


@pytest.fixture(scope="module")
def big_tarball() -> bytes:
    return v1_tarball("p", 3e-2)  # ~3 MB: several progress steps, still instant on loopback


def _env(catalog, tmp_path, **extra) -> dict:
    env = {**os.environ, "MOBILENET_ZOO_CATALOG": str(catalog), "MOBILENET_ZOO_CACHE": str(tmp_path / "cache")}
    env.update(extra)
    return env


def run(args, env) -> subprocess.CompletedProcess:
    return subprocess.run([console_script(), *args], capture_output=True, text=True, env=env, timeout=300)


def test_progress_lines_when_stderr_is_not_a_terminal(fault_server, tmp_path, big_tarball):
    catalog, (m,) = serve_models(fault_server, tmp_path, [("m1", big_tarball)])
    result = run(["fetch", "m1"], _env(catalog, tmp_path))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("m1: ")]
    assert lines[0].startswith("m1: downloading") and "of 3.0 MB" in lines[0]
    assert lines[-1] == "m1: downloaded 3.0 MB of 3.0 MB (100%)"
    assert 2 <= len(lines) <= 12  # a line per 10% at most, not one per chunk
    assert "\x1b[" not in result.stderr and "━" not in result.stderr


def test_rich_bar_on_a_terminal(fault_server, tmp_path, big_tarball):
    catalog, _ = serve_models(fault_server, tmp_path, [("m1", big_tarball)])
    code, shown, _ = run_in_pty([console_script(), "fetch", "m1"], env=_env(catalog, tmp_path), columns=100)
    text = plain(shown)
    assert code == 0 and "━" in shown and "m1" in text and "3.0/3.0 MB" in text


@pytest.mark.parametrize("how", [["--quiet"], "env"])
def test_quiet_global_option_and_env(fault_server, tmp_path, big_tarball, how):
    catalog, _ = serve_models(fault_server, tmp_path, [("m1", big_tarball)])
    env = _env(catalog, tmp_path, **({"MOBILENET_ZOO_QUIET": "1"} if how == "env" else {}))
    result = run([*(how if how != "env" else []), "fetch", "m1"], env)
    assert result.returncode == 0 and "downloading" not in result.stderr and "m1:" not in result.stderr
    assert result.stdout.strip().endswith("r1")  # the path is still printed


def test_resume_and_restart_are_said(fault_server, tmp_path, big_tarball):
    catalog, (m,) = serve_models(fault_server, tmp_path, [("m1", big_tarball)])
    fault_server.set_faults(m.path, [Fault(drop_after=1_000_000)])
    result = run(["fetch", "m1"], _env(catalog, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "note: m1: resuming at 1.0 MB of 3.0 MB" in result.stderr

    (tmp_path / "again").mkdir()
    catalog, (m,) = serve_models(fault_server, tmp_path / "again", [("m2", big_tarball)])
    fault_server.set_faults(m.path, [Fault(drop_after=1_000_000), Fault(ignore_range=True)])
    result = run(["fetch", "m2"], _env(catalog, tmp_path / "again"))
    assert result.returncode == 0, result.stderr
    assert "note: m2: restarting from byte 0: server ignored Range" in result.stderr


def test_classify_download_shows_progress(tmp_path):
    """Downloads inside other commands report too (classify fetches the model it needs)."""
    pytest.importorskip("ai_edge_litert")
    from .archives import tar_gz
    from .fetch_helpers import model_entry, write_catalog

    tarball = tar_gz({"./mobilenet_v1_0.25_128_quant.tflite": (DATA / "mobilenet_v1_0.25_128_quant.tflite")
                      .read_bytes()}, dirs=[], root_dir=True)
    (tmp_path / "upstream.tgz").write_bytes(tarball)
    catalog = write_catalog(tmp_path / "catalog.yaml", [model_entry(
        "v1_0.25_128_quant", (tmp_path / "upstream.tgz").as_uri(), tarball, template_id="v1_0.25_128_quant")])
    result = run(["classify", "v1_0.25_128_quant", str(DATA / "cat.bmp")], _env(catalog, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "v1_0.25_128_quant: downloaded" in result.stderr
    assert "XNNPACK" not in result.stderr  # the runtime's own chatter is hidden...
    again = run(["--verbose", "classify", "v1_0.25_128_quant", str(DATA / "cat.bmp")], _env(catalog, tmp_path))
    assert again.returncode == 0 and "XNNPACK" in again.stderr  # ...unless asked for
    assert "downloaded" not in again.stderr  # cached: no download, no progress


def test_missing_tf_extra_ends_with_the_install_hint(tmp_path):
    """Without numpy (the [tf] extra), classify/restore/bench say how to install it (no exit 3)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    for name in ("numpy", "PIL", "tensorflow", "ai_edge_litert"):
        (blocker / f"{name}.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    image = str(DATA / "cat.bmp")
    for args in (["classify", "v1_0.25_128_quant", image], ["restore", "v1_0.25_128_quant"],
                 ["bench", "v1_0.25_128_quant", "--runs", "1"]):
        result = run(args, env)
        assert result.returncode == 1, (args, result.stderr)
        assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
        assert "pip install '.[tf]'" in result.stderr or "pip install 'mobilenet-zoo[tf]'" in result.stderr, \
            result.stderr


def test_line_progress_is_occasional():
    """Lines at the start, per 10% step or 5 s without one, and once at the end."""
    import io

    from mobilenet_zoo_cli.feedback import LineProgress

    now = [0.0]
    out = io.StringIO()
    lines = LineProgress(out, clock=lambda: now[0])
    total = 1_000_000
    for done in range(0, total + 1, 1000):  # 1001 calls, 1 ms apart
        now[0] += 0.001
        lines("m", done, total)
    lines("m", total, total)  # a repeated final call says nothing new
    text = out.getvalue().splitlines()
    assert text[0] == "m: downloading 0 B of 1.0 MB (0%)" and text[-1] == "m: downloaded 1.0 MB of 1.0 MB (100%)"
    assert len(text) == 11  # 0%, 10%, ..., 90%, done
    slow = io.StringIO()
    lines = LineProgress(slow, clock=lambda: now[0])
    for step in range(13):  # unknown size, a call every second: a line every 5 s
        now[0] += 1.0
        lines("n", step * 10, None)
    assert len(slow.getvalue().splitlines()) == 3
