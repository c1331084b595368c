"""The one place the CLI turns an exception into what the user reads and an exit code.

Every path goes through ``report``: the command group (an error that ends a command),
and commands that fail per item and go on (`fetch -j`, `mirror`, `classify --skip-errors`),
so a message looks the same wherever it was raised. ``TABLE`` maps each known error type
to one describing function, like huggingface_hub's CLI; anything else is a bug of ours
(exit 3). With ``--debug`` ($MOBILENET_ZOO_DEBUG) the traceback is printed first, here and
nowhere else.

The library names bad arguments as Python parameters (``max_macs must be >= 0``) and lists
them in ``ZooError.params``; ``flag`` spells them as this CLI's options (``--max-macs``).
"""

from __future__ import annotations

import re
import sys
from typing import Callable, NamedTuple

from zoo.errors import TF_EXTRA_MODULES, ZooError, tf_extra_hint

# Exit codes beyond the errors' own: a bug of ours, and Ctrl-C (128 + SIGINT, as shells do).
EXIT_BUG = 3
EXIT_INTERRUPTED = 130
BUG_HINT = "rerun with --debug for the traceback, and please report it"

# API parameter -> the option that sets it, where the option is not simply --name-with-dashes.
_FLAG_FOR_PARAM = {"archive": "--from", "mirrors": "--mirror"}
# Boolean parameters whose False has its own flag (`quantized=False` is `--float`).
_FLAG_FOR_FALSE = {"quantized": "--float", "keep_archive": "--drop-archive"}


def flag(param: str) -> str:
    """The command-line spelling of an API parameter: max_macs -> --max-macs."""
    return _FLAG_FOR_PARAM.get(param) or "--" + param.replace("_", "-")


def _flag_with_value(param: str, value: str) -> str:
    """``param=value`` as typed on the command line: --device pixel1, --skip-errors, --float."""
    value = value.strip("'\"")
    if value == "True":
        return flag(param)
    if value == "False" and param in _FLAG_FOR_FALSE:
        return _FLAG_FOR_FALSE[param]
    return f"{flag(param)} {value}"


def spell_flags(text: str | None, params: tuple[str, ...]) -> str | None:
    """``text`` with each named API parameter written as its flag: ``max_macs`` -> ``--max-macs``,
    ``device='pixel1'`` -> ``--device pixel1``. Whole words only; `backticked` commands are left alone."""
    if not text:
        return text
    for param in sorted(params, key=len, reverse=True):  # max_latency_ms before a shorter name inside it
        name = rf"(?<![\w`/.-]){re.escape(param)}"  # not inside a path (/tmp/data) or a name (x.data)
        text = re.sub(name + r"=('[^']*'|\"[^\"]*\"|[^\s,;)]+)",
                      lambda m, p=param: _flag_with_value(p, m.group(1)), text)
        text = re.sub(name + r"(?![\w=/-])(?!\.\w)", flag(param), text)
    return text


def spelled_record(record: dict, error: ZooError) -> dict:
    """A failed model's JSON record with its error and hint in the command line's words."""
    return {**record, "error": spell_flags(record.get("error"), error.params),
            "hint": spell_flags(record.get("hint"), error.params)}


class Described(NamedTuple):
    message: str
    hint: str | None
    exit_code: int


def _zoo_error(exc: ZooError, command: str | None) -> Described:
    if exc.exit_code == EXIT_BUG:  # UnexpectedError: one model of several hit a bug of ours
        return Described(exc.message, BUG_HINT, EXIT_BUG)
    return Described(spell_flags(exc.message, exc.params), spell_flags(exc.hint, exc.params), exc.exit_code)


def _missing_runtime(exc: ModuleNotFoundError, command: str | None) -> Described | None:
    root = (exc.name or "").split(".")[0]
    if root not in TF_EXTRA_MODULES:
        return None
    return Described(f"`{command or 'this command'}` needs {TF_EXTRA_MODULES[root]}, which is not installed",
                     tf_extra_hint(), 1)


def _environment(exc: OSError, command: str | None) -> Described | None:
    """Ordinary situations (read-only or full disks, permissions); None: a bug."""
    import errno

    where = exc.filename or "a file"
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EROFS:
        return Described(f"cannot write {where}: {reason}", "the file system is read-only; use a writable location", 1)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return Described(f"cannot write {where}: {reason}", "free some disk space or use another location", 1)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Described(f"permission denied: {where}", "fix its permissions or choose another location", 1)
    return None


def _interrupted(exc: KeyboardInterrupt, command: str | None) -> Described:
    return Described("interrupted", None, EXIT_INTERRUPTED)


# Checked in order: the first type the exception is an instance of decides.
TABLE: list[tuple[type[BaseException], Callable[[BaseException, str | None], Described | None]]] = [
    (ZooError, _zoo_error),
    (KeyboardInterrupt, _interrupted),
    (ModuleNotFoundError, _missing_runtime),
    (OSError, _environment),
]


def describe(exc: BaseException, command: str | None = None) -> Described:
    """Message, hint and exit code for any exception (unknown ones are bugs: exit 3)."""
    for kind, describer in TABLE:
        if isinstance(exc, kind):
            described = describer(exc, command)
            if described is not None:
                return described
            break
    from zoo._util.redact import redact

    return Described(f"unexpected {type(exc).__name__}: {redact(str(exc))}", BUG_HINT, EXIT_BUG)


def print_error(message: str | None, hint: str | None = None) -> None:
    """``error: ...`` (and ``hint: ...``) on stderr: red and yellow on a terminal, plain in a log.
    A hint alone (``message=None``) follows a report that is not an error, e.g. `verify`'s."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if message is not None:
        console.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        console.print(f"[yellow]hint:[/] {escape(hint)}")


def report(exc: BaseException, *, debug: bool, command: str | None = None, message: bool = True) -> int:
    """Show ``exc`` to the user (its traceback first with ``debug``); return its exit code.

    ``message=False``: the message goes elsewhere (a per-model record of ``--json``), only
    the debug traceback is shown."""
    if debug and not isinstance(exc, KeyboardInterrupt):
        import traceback

        cause = exc.cause if getattr(exc, "cause", None) is not None else exc  # UnexpectedError: the bug itself
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    text, hint, code = describe(exc, command)
    if message:
        print_error(text, hint)
    return code
