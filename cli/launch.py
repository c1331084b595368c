"""The console script's entry point: load only what the command line needs.

`list`, `show`, `pick` and `frontier` are run many times a day, often from scripts, so
they must start within a small factor of importing typer itself. Building every other
command (fetch, cache, restore, ...) costs several milliseconds of inspecting signatures,
so for those four the other command modules are not imported at all. Anything else
(another command, `--help`, shell completion) loads the whole app.

`eval` is timed as a whole process against a hand-written loop (benchmarks/bench_eval.py),
so it too loads only its own module: start-up is part of what users wait for.

`--help` on a terminal narrower than RICH_HELP_MIN_COLUMNS is click's plain layout: rich's
three-column option table cuts option names short there (`--feature…` at 60 columns), while
the plain layout wraps the help text and keeps every name whole. TYPER_USE_RICH set by the
user wins.
"""

from __future__ import annotations

import sys

LIGHT_COMMANDS = frozenset({"list", "show", "pick", "frontier"})
ALONE_COMMANDS = frozenset({"eval"})  # commands whose module is loaded without the others
_GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--catalog", "--cache-dir", "--mirror"})
RICH_HELP_MIN_COLUMNS = 90  # the widest command's option table (finetune) fits from here on


def command_name(argv: list[str]) -> str | None:
    """The subcommand on a command line (global options and their values skipped), or None."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            return arg
    return None


def wants_plain_help(argv: list[str], columns: int) -> bool:
    """A help screen for a terminal too narrow for rich's option table."""
    asks_help = any(arg in ("--help", "-h") for arg in argv) or not argv
    return asks_help and columns < RICH_HELP_MIN_COLUMNS


def main() -> None:
    import os
    import shutil

    import mobilenet_zoo_cli

    if wants_plain_help(sys.argv[1:], shutil.get_terminal_size().columns):
        os.environ.setdefault("TYPER_USE_RICH", "0")  # read when typer is imported, below

    command = command_name(sys.argv[1:])
    mobilenet_zoo_cli.LIGHT_ONLY = command in LIGHT_COMMANDS
    mobilenet_zoo_cli.ONLY_COMMAND = command if command in ALONE_COMMANDS else None
    from .app import main as run

    run()
