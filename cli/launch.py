"""The console script's entry point: load only what the command line needs.

`list`, `show`, `pick` and `frontier` are run many times a day, often from scripts, so
they must start within a small factor of importing typer itself. Building every other
command (fetch, cache, restore, ...) costs several milliseconds of inspecting signatures,
so for those four the other command modules are not imported at all. Anything else
(another command, `--help`, shell completion) loads the whole app.

`eval` is timed as a whole process against a hand-written loop (benchmarks/bench_eval.py),
so it too loads only its own module: start-up is part of what users wait for.
"""

from __future__ import annotations

import sys

LIGHT_COMMANDS = frozenset({"list", "show", "pick", "frontier"})
ALONE_COMMANDS = frozenset({"eval"})  # commands whose module is loaded without the others
_GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--catalog", "--cache-dir", "--mirror"})


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


def main() -> None:
    import mobilenet_zoo_cli

    command = command_name(sys.argv[1:])
    mobilenet_zoo_cli.LIGHT_ONLY = command in LIGHT_COMMANDS
    mobilenet_zoo_cli.ONLY_COMMAND = command if command in ALONE_COMMANDS else None
    from .app import main as run

    run()
