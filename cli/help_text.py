"""`--help` in the user's words: placeholders such as TEXT, N, PATH instead of typer's type names.

typer 0.2x shows internal type names (``<str>``, ``<int range>``, ``<list[str]>``) next to
options and arguments without a metavar. ``tidy`` walks the built click command tree once
and gives every such parameter a plain placeholder, so commands added later (by any module)
get it too without remembering to set ``metavar``.
"""

from __future__ import annotations

import copy

_BY_TYPE = {"integer": "N", "integer range": "N", "int": "N", "int range": "N", "float": "X",
            "float range": "X", "text": "TEXT", "str": "TEXT", "string": "TEXT", "path": "PATH",
            "file": "FILE", "filename": "FILE", "directory": "DIR"}


def _blank_type(param_type):
    """A copy of the type whose help placeholder is empty (the argument's name says it all)."""
    quiet = copy.copy(param_type)
    quiet.get_metavar = lambda *args, **kwargs: ""
    return quiet


def tidy(command) -> None:
    """Set plain metavars on every parameter of ``command`` and its subcommands (in place)."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        if param.param_type_name == "argument":
            if param.metavar is None:
                param.metavar = (param.name or "value").upper() + ("..." if param.nargs != 1 else "")
            if "Choice" not in type(param.type).__name__:
                param.type = _blank_type(param.type)
        elif param.metavar is None and "Choice" not in type(param.type).__name__:
            name = (getattr(param.type, "name", "") or "").lower()
            if "path" in type(param.type).__name__.lower():
                name = "path"
            param.metavar = _BY_TYPE.get(name, "VALUE")
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)
