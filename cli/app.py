"""The global options and the console script's entry point.

The app object, the common option types and the error handling live in ``common``
(``errors`` formats every error); each group of commands lives in its own module and
registers itself on ``app``: ``catalog_cmds`` (list, show, pick, frontier), ``fetch_cmds``
(fetch, verify, cache, mirror), ``run_cmds`` (restore, classify, bench, plot), ``eval_cmds``
(eval). Those modules import the heavy parts of ``zoo`` inside the command functions, so
`list` stays light. This module imports them; they never import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zoo import config

import mobilenet_zoo_cli as _package

from .common import EXIT_BROKEN_PIPE, GlobalOptions, app, silence_stdout
from .launch import LIGHT_COMMANDS as _LIGHT_COMMANDS  # `pick --fetch` sets up feedback itself


def _print_version(value: bool) -> None:
    if value:
        from zoo import __version__

        print(f"mobilenet-zoo {__version__}")
        raise typer.Exit()


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
    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose contradict each other", param_hint="--quiet")
    options = GlobalOptions(
        catalog=catalog, cache_dir=cache_dir, offline=offline, debug=debug,
        mirrors=tuple(m for value in mirror for m in value.replace(";", " ").split() if m) if mirror else None,
        log_level="debug" if verbose else ("warning" if quiet else None))
    ctx.obj = options
    ctx.with_resource(config.overrides(**options.config_overrides()))  # undone when the command ends
    if ctx.invoked_subcommand not in _LIGHT_COMMANDS:  # progress, notes, runtime logs (not needed by `list`)
        from . import feedback

        feedback.setup()
        ctx.call_on_close(feedback.close)


def main() -> None:
    import sys

    try:
        try:
            app(prog_name="mobilenet-zoo")
        finally:
            sys.stdout.flush()  # a reader that left shows up here, at the final flush
    except BrokenPipeError:
        silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)


# Command modules register themselves on `app` when imported. The console script
# (`launch.main`) may ask for the light commands only, so `list` never builds `fetch`.
if _package.ONLY_COMMAND == "eval":
    from . import eval_cmds  # noqa: E402,F401
else:
    from . import catalog_cmds  # noqa: E402,F401

    if not _package.LIGHT_ONLY:
        from . import eval_cmds, fetch_cmds, run_cmds, train_cmds  # noqa: E402,F401
