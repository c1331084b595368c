"""The typer app, its global options, and the one place errors become messages.

Each group of commands lives in its own module and registers itself on ``app``:
``catalog_cmds`` (list, show, pick, frontier), ``fetch_cmds`` (fetch, verify, cache,
mirror), ``run_cmds`` (restore, classify, bench, plot). Those modules import the
heavy parts of ``zoo`` inside the command functions, so `list` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from zoo import config

import mobilenet_zoo_cli as _package
from zoo.errors import ZooError
from zoo.redact import redact

@dataclass
class Settings:
    """Per-invocation state. The global options themselves live in the environment
    (``config.apply_overrides``), so the library sees exactly what the commands see."""

    debug: bool = False
    _catalog_obj: object = None

    def load_catalog(self):
        """The catalog (loaded once; includes this machine's measured latencies)."""
        if self._catalog_obj is None:
            from zoo.catalog import load_catalog

            self._catalog_obj = load_catalog()
        return self._catalog_obj

    @staticmethod
    def resolved_cache_dir() -> Path:
        return config.cache_dir()


settings = Settings()


class _ZooGroup(TyperGroup):
    """The root command group: turns every ZooError into a one-screen message and exit code.

    Doing it here (not in `main`) means typer's test runner sees exactly what users see.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from .help_text import tidy

        tidy(self)  # plain placeholders in --help (TEXT, N, PATH), never typer's type names

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except ZooError as exc:
            if settings.debug or config.debug():
                raise
            _print_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _print_error("interrupted", None)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `mobilenet-zoo list | head -1`: the reader left; so do we, quietly
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own flow and usage errors
            raise
        except ModuleNotFoundError as exc:
            from zoo.errors import TF_EXTRA_MODULES, tf_extra_hint

            root = (exc.name or "").split(".")[0]
            if root not in TF_EXTRA_MODULES or settings.debug or config.debug():
                raise
            command = ctx.invoked_subcommand or "this command"
            _print_error(f"`{command}` needs {TF_EXTRA_MODULES[root]}, which is not installed", tf_extra_hint())
            raise typer.Exit(1) from None
        except OSError as exc:
            if settings.debug or config.debug():
                raise
            known = _environment_error(exc)
            if known is None:
                _print_error(f"unexpected {type(exc).__name__}: {redact(str(exc))}",
                             "rerun with --debug for the traceback, and please report it")
                raise typer.Exit(3) from None
            _print_error(*known)
            raise typer.Exit(1) from None
        except Exception as exc:
            if settings.debug or config.debug():
                raise
            _print_error(f"unexpected {type(exc).__name__}: {redact(str(exc))}",
                         "rerun with --debug for the traceback, and please report it")
            raise typer.Exit(3) from None


# Quietly, with status 1: what click and rich do when the reader of stdout goes away, so every
# command behaves the same whichever of them noticed first. (Not exit 3: not a bug of ours.)
EXIT_BROKEN_PIPE = 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _environment_error(exc: OSError) -> tuple[str, str] | None:
    """Ordinary situations (read-only or full disks, permissions) as (message, hint); None: a bug."""
    import errno

    where = exc.filename or "a file"
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EROFS:
        return f"cannot write {where}: {reason}", "the file system is read-only; use a writable location"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"cannot write {where}: {reason}", "free some disk space or use another location"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where}", "fix its permissions or choose another location"
    return None


app = typer.Typer(
    name="mobilenet-zoo",
    cls=_ZooGroup,
    help="Find, fetch, verify and run every published TensorFlow MobileNet (v1, v2, v3, EdgeTPU).\n\n"
         "Example: mobilenet-zoo pick --max-macs 300 --quantized && mobilenet-zoo fetch v1_1.0_224",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (model names too)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from zoo import __version__

        print(f"mobilenet-zoo {__version__}")
        raise typer.Exit()


_LIGHT_COMMANDS = frozenset({"list", "show", "pick", "frontier"})  # `pick --fetch` sets up feedback itself


@app.callback()
def global_options(
    ctx: typer.Context,
    catalog: Optional[Path] = typer.Option(
        None, "--catalog", envvar=config.ENV_CATALOG, metavar="PATH",
        help="Use another catalog file in the same schema (private mirrors, new models)."),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", envvar=config.ENV_CACHE, metavar="DIR",
        help="Where fetched models live (default: the platform's user cache dir)."),
    mirror: Optional[list[str]] = typer.Option(
        None, "--mirror", envvar=config.ENV_MIRROR, metavar="URL",
        help="Mirror base (http(s)://, file:// or a directory); repeat for several. "
             "Tried in order before upstream. The env var takes a space-separated list."),
    offline: bool = typer.Option(
        False, "--offline", envvar=config.ENV_OFFLINE,
        help="Never touch the network: use only the cache and file mirrors."),
    debug: bool = typer.Option(
        False, "--debug", envvar=config.ENV_DEBUG, help="Show full tracebacks on errors."),
    quiet: bool = typer.Option(
        False, "--quiet", envvar=config.ENV_QUIET,
        help="No progress bars or notes; warnings and errors only."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v",
        help="More detail, including TensorFlow's and LiteRT's own logs (hidden otherwise). "
             f"${config.ENV_LOG_LEVEL}=debug|info|warning|error sets the level too."),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
) -> None:
    """Find, fetch, verify and run every published TensorFlow MobileNet."""
    mirrors = [m for value in mirror or [] for m in value.replace(";", " ").split() if m]
    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose contradict each other", param_hint="--quiet")
    level = "debug" if verbose else ("warning" if quiet else None)
    config.apply_overrides(cache_dir=cache_dir, mirrors=mirrors if mirror else None, offline=offline or None,
                           catalog=catalog, log_level=level)
    settings.debug = debug
    settings._catalog_obj = None
    if ctx.invoked_subcommand not in _LIGHT_COMMANDS:  # progress, notes, runtime logs (not needed by `list`)
        from . import feedback

        feedback.setup()
        ctx.call_on_close(feedback.close)


def _print_error(message: str, hint: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        console.print(f"[yellow]hint:[/] {escape(hint)}")




def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush cannot fail again on a closed pipe."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main() -> None:
    import sys

    try:
        try:
            app(prog_name="mobilenet-zoo")
        finally:
            sys.stdout.flush()  # a reader that left shows up here, at the final flush
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)


# Command modules register themselves on `app` when imported. The console script
# (`launch.main`) may ask for the light commands only, so `list` never builds `fetch`.
from . import catalog_cmds  # noqa: E402,F401

if not _package.LIGHT_ONLY:
    from . import eval_cmds, fetch_cmds, run_cmds  # noqa: E402,F401
