"""How every command writes to the terminal: one console policy and one JSON writer."""

from __future__ import annotations

import json
import sys


def terminal():
    """A rich console that never squeezes tables when output goes to a pipe or a file."""
    from rich.console import Console

    term = Console(highlight=False)
    return term if term.is_terminal else Console(highlight=False, width=160)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
