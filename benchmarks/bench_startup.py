"""How light are the light commands? `mobilenet-zoo list` against importing its own deps.

    python benchmarks/bench_startup.py [--runs 15]

Both commands run as fresh subprocesses, interleaved, in the same run; the figure that
matters is the ratio of medians (goal: at most 2.0), since absolute times vary between machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# What any typer + rich CLI pays before doing work: typer parses options through pydantic
# (imported on first use since typer 0.2x) and rich.console renders the output.
TYPER_FLOOR = (
    "import typer\n"
    "from rich.console import Console\n"
    "app = typer.Typer()\n"
    "@app.command()\n"
    "def main(n: int = 1):\n"
    "    Console().print('x' * n)\n"
    "app()\n"
)


def _time(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def console_script() -> str | None:
    """The installed entry point next to this interpreter (a pyenv/asdf shim would add ~100 ms)."""
    beside = Path(sys.executable).parent / "mobilenet-zoo"
    return str(beside) if beside.exists() else shutil.which("mobilenet-zoo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = console_script()
    if not script:
        sys.exit("mobilenet-zoo is not installed: pip install -e .")
    env = {**os.environ, "MOBILENET_ZOO_CACHE": tempfile.mkdtemp(), "MOBILENET_ZOO_PROFILE": os.devnull + "x"}
    commands = {
        "baseline: python -c 'import typer, rich, yaml'": [sys.executable, "-c", "import typer, rich, yaml"],
        "floor: a one-option typer app that prints (for scale)": [sys.executable, "-c", TYPER_FLOOR],
        "mobilenet-zoo list": [script, "list"],
        "mobilenet-zoo show 1.0_224": [script, "show", "1.0_224"],
        "mobilenet-zoo pick --max-macs 300": [script, "pick", "--max-macs", "300"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, cmd in commands.items():  # warm the OS caches once
        _time(cmd, env)
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(_time(cmd, env))
    base = statistics.median(next(iter(times.values())))
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:50s} median {med * 1000:7.1f} ms   ratio {med / base:4.2f}")


if __name__ == "__main__":
    main()
