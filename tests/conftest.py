"""Every test gets its own cache, profile and catalog settings; nothing touches the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .http_server import fault_server  # noqa: F401 - the loopback server fixture, for every test

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED = REPO.parent / "shared"
STATE = "state"  # per test: tmp_path / STATE holds what the program keeps per user (not output, not cache)


def console_script() -> str:
    """The installed `mobilenet-zoo` next to this interpreter (else on PATH); skip if absent."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "mobilenet-zoo"
    path = str(beside) if beside.exists() else shutil.which("mobilenet-zoo")
    if not path:
        pytest.skip("the console script is not installed (pip install -e .)")
    return path


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Point the cache and the bench profile at temp dirs and clear catalog/mirror overrides."""
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path / "cache"))
    # this user's private state (bench profile, parsed catalog copies) lives in its own folder
    monkeypatch.setenv("MOBILENET_ZOO_PROFILE", str(tmp_path / STATE / "profile.json"))
    for name in ("MOBILENET_ZOO_CATALOG", "MOBILENET_ZOO_MIRROR", "MOBILENET_ZOO_OFFLINE", "MOBILENET_ZOO_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    # Any stray attempt to reach a real host fails fast instead of hanging.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield
    _check_tensorflow_still_eager()


def _check_tensorflow_still_eager() -> None:
    """A test that leaves TensorFlow in graph mode (an interrupt inside a graph context) breaks
    every later test in the process with 'SymbolicTensor has no attribute numpy'; fail it here."""
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "executing_eagerly") and not tf.executing_eagerly():
        pytest.fail("this test left TensorFlow in graph mode (a graph context was never exited)")


@pytest.fixture
def cli():
    """Run the CLI in-process with typer's runner; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from mobilenet_zoo_cli.app import app

    def invoke(*args: str, env: dict | None = None, input: str | None = None):
        saved = dict(os.environ)  # a test may set variables; the next one must not see them
        try:
            result = CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return result.exit_code, result.stdout, result.stderr

    return invoke
