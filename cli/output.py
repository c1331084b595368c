"""How every command writes to the terminal: one console policy, one table writer, one JSON writer.

On a terminal, tables are rich tables that fit the window: when a table is too wide,
the least important columns are dropped first (a model id is never cut). When stdout is a
pipe or a file, tables are plain aligned text (header + rows, like ``ls -l`` or ``git``),
which is both faster (no rich) and what ``cut``/``awk``/``column`` expect.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence


def terminal():
    """A rich console that never squeezes tables when output goes to a pipe or a file."""
    from rich.console import Console

    term = Console(highlight=False)
    return term if term.is_terminal else Console(highlight=False, width=160)


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


class Column:
    """A table column. ``keep`` ranks importance: on a narrow terminal the lowest goes first;
    ``None`` means never dropped (the model id). (A plain class: a dataclass costs start-up.)"""

    __slots__ = ("name", "justify", "keep")

    def __init__(self, name: str, justify: str = "left", keep: int | None = None):
        self.name, self.justify, self.keep = name, justify, keep  # justify: left, right or center


def plain_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    """Header and rows as aligned plain text (two spaces between columns, no trailing blanks)."""
    widths = [max([len(c.name)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = []
    for cells in [[c.name for c in columns], *rows]:
        parts = []
        for cell, col, width in zip(cells, columns, widths):
            if col.justify == "right":
                parts.append(cell.rjust(width))
            elif col.justify == "center":
                parts.append(cell.center(width))
            else:
                parts.append(cell.ljust(width))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def fitting_columns(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int,
                    gap: int = 2) -> list[int]:
    """Indices of the columns to show so the table fits ``width`` (least important dropped first)."""
    keep = list(range(len(columns)))
    widths = [max([len(c.name)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def total() -> int:
        return sum(widths[i] for i in keep) + gap * (len(keep) - 1)

    droppable = sorted((i for i, c in enumerate(columns) if c.keep is not None), key=lambda i: columns[i].keep)
    for i in droppable:
        if total() <= width:
            break
        keep.remove(i)
    return keep


def terminal_width() -> int:
    """Columns of the terminal ($COLUMNS wins, as in rich and most CLIs); 80 if unknown."""
    import os
    import shutil

    try:
        return max(int(os.environ.get("COLUMNS", "")), 20)
    except ValueError:
        return shutil.get_terminal_size((80, 24)).columns


_STYLES = {"bold": "1", "dim": "2", "italic": "3", "red": "31", "green": "32", "yellow": "33", "bold green": "1;32",
           "bold red": "1;31"}


def style(text: str, name: str) -> str:
    """``text`` in a terminal style (ANSI), unless stdout is not a terminal or NO_COLOR / TERM=dumb.

    The light commands style their few words this way instead of importing rich (~15 ms).
    """
    import os

    if not stdout_is_terminal() or "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return text
    return f"\x1b[{_STYLES[name]}m{text}\x1b[0m"


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
    """A table: on a terminal, fitted to its width (least important columns dropped first),
    with a title, a bold header and a rule; into a pipe, plain aligned text (no title)."""
    if not stdout_is_terminal():
        sys.stdout.write(plain_table(columns, rows))
        return
    width = terminal_width()
    keep = fitting_columns(columns, rows, width)
    dropped = len(columns) - len(keep)
    shown = [columns[i] for i in keep]
    text = plain_table(shown, [[r[i] for i in keep] for r in rows]).splitlines()
    out = []
    if title:
        if dropped:
            title += f" ({dropped} column{'s' if dropped != 1 else ''} hidden: widen the terminal)"
        out.append(style(title, "italic"))
    out.append(style(text[0], "bold"))
    out.append(style("\u2500" * min(len(max(text, key=len)), width), "dim"))
    out.extend(text[1:])
    sys.stdout.write("\n".join(out) + "\n")
