"""Helpers shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path


def console_script() -> str | None:
    """The installed entry point next to this interpreter (a pyenv/asdf shim would add ~100 ms)."""
    beside = Path(sys.executable).parent / "mobilenet-zoo"
    return str(beside) if beside.exists() else shutil.which("mobilenet-zoo")


def timed(cmd: list[str], **kw) -> float:
    """Wall seconds of one subprocess run (stdout discarded, failures raise)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def compile_project() -> None:
    """Byte-compile zoo/ and cli/ first, as `pip install` does: with PYTHONDONTWRITEBYTECODE set
    (or .pyc files older than an edit) every timed run would compile the project's source anew,
    while the libraries it is compared with come compiled from site-packages."""
    import compileall

    repo = Path(__file__).resolve().parent.parent
    for package in ("zoo", "cli"):
        compileall.compile_dir(str(repo / package), quiet=1)
