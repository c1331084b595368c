"""How light are the light commands? `mobilenet-zoo list` against importing its own deps.

    python benchmarks/bench_startup.py [--runs 15]

Both commands run as fresh subprocesses, interleaved, in the same run; the figure that
matters is the ratio of medians (goal: at most 2.0), since absolute times vary between machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile


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




from common import console_script, timed  # noqa: E402 - benchmarks/ is on sys.path when run as a script


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
        timed(cmd, env=env)
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, env=env))
    base = statistics.median(next(iter(times.values())))
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:50s} median {med * 1000:7.1f} ms   ratio {med / base:4.2f}")


if __name__ == "__main__":
    main()
