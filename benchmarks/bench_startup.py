"""How light are the light commands? `list`, `show`, `pick` against importing their own deps.

    python benchmarks/bench_startup.py [--runs 15]

Every command runs as a fresh subprocess, interleaved with the others, in the same run
(the machine is shared and noisy; only ratios measured together mean anything). Reported:

* the baseline, ``python -c 'import typer, rich, yaml'``;
* the typer floor: a one-command typer app with a string and a float option that prints,
  i.e. what any typer CLI pays before its own work (depends on the installed typer:
  0.29 parses options through pydantic);
* ``list``, ``show``, ``pick`` into a pipe (plain text) and, where a pty is available,
  ``list`` on a terminal (the rich table), each as a ratio to the baseline (goal: at most
  1.5, never above 2.0) and to the floor.

The catalog's parsed copy is warmed first (that is the normal state after the first run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

TYPER_FLOOR = (
    "import typer\n"
    "from rich.console import Console\n"
    "app = typer.Typer()\n"
    "@app.command()\n"
    "def main(name: str = 'x', n: float = 1.0):\n"
    "    Console().print(name * int(n))\n"
    "app()\n"
)

from common import compile_project, console_script, timed  # noqa: E402 - benchmarks/ is on sys.path when run as a script


def _pty_command(cmd: list[str]) -> list[str] | None:
    """The command under a pseudo-terminal of 100 columns via util-linux `script`, if present."""
    import shlex
    import shutil

    script = shutil.which("script")
    if not script or not sys.platform.startswith("linux"):
        return None
    return [script, "-qec", " ".join(shlex.quote(c) for c in cmd), "/dev/null"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = console_script()
    if not script:
        sys.exit("mobilenet-zoo is not installed: pip install -e .")
    import typer

    compile_project()  # as an installed copy is: timing Python's compiler is not the point
    # a private state folder of its own: the parsed catalog copy is made by the first run, then used
    env = {**os.environ, "MOBILENET_ZOO_CACHE": tempfile.mkdtemp(),
           "MOBILENET_ZOO_PROFILE": os.path.join(tempfile.mkdtemp(), "profile.json"), "COLUMNS": "100"}
    base_cmd = [sys.executable, "-c", "import typer, rich, yaml"]
    commands = {
        "baseline: python -c 'import typer, rich, yaml'": base_cmd,
        f"floor: one-command typer {typer.__version__} app": [sys.executable, "-c", TYPER_FLOOR],
        "mobilenet-zoo list | cat": [script, "list"],
        "mobilenet-zoo show 1.0_224 | cat": [script, "show", "1.0_224"],
        "mobilenet-zoo pick --max-macs 300 | cat": [script, "pick", "--max-macs", "300"],
    }
    pty_list, pty_base = _pty_command([script, "list"]), _pty_command(base_cmd)
    if pty_list and pty_base:  # `script` itself costs a few ms: compare like with like
        commands["pty: baseline under `script`"] = pty_base
        commands["pty: mobilenet-zoo list (terminal table)"] = pty_list
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, cmd in commands.items():  # warm the OS caches and the catalog's parsed copy
        timed(cmd, env=env, stderr=subprocess.DEVNULL)
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, env=env, stderr=subprocess.DEVNULL))
    med = {name: statistics.median(values) for name, values in times.items()}
    base = med["baseline: python -c 'import typer, rich, yaml'"]
    floor = next(v for k, v in med.items() if k.startswith("floor"))
    print(f"{'command':45s} {'median ms':>9s}  {'/baseline':>9s}  {'/floor':>6s}")
    for name, value in med.items():
        ref = med["pty: baseline under `script`"] if name.startswith("pty:") else base
        print(f"{name:45s} {value * 1000:9.1f}  {value / ref:9.2f}  {value / floor:6.2f}")
    print(f"(runs: {args.runs}; pty rows are relative to the baseline under `script`)")


if __name__ == "__main__":
    main()
