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
from zoo.errors import ZooError

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
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own flow and usage errors
            raise
        except Exception as exc:
            if settings.debug or config.debug():
                raise
            _print_error(f"unexpected {type(exc).__name__}: {exc}",
                         "rerun with --debug for the traceback, and please report it")
            raise typer.Exit(3) from None


app = typer.Typer(
    name="mobilenet-zoo",
    cls=_ZooGroup,
    help="Find, fetch, verify and run every published TensorFlow MobileNet (v1, v2, v3, EdgeTPU).\n\n"
         "Example: mobilenet-zoo pick --max-macs 300 --quantized && mobilenet-zoo fetch v1_1.0_224",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from zoo import __version__

        print(f"mobilenet-zoo {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
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
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
) -> None:
    """Find, fetch, verify and run every published TensorFlow MobileNet."""
    mirrors = [m for value in mirror or [] for m in value.replace(";", " ").split() if m]
    config.apply_overrides(cache_dir=cache_dir, mirrors=mirrors if mirror else None, offline=offline or None,
                           catalog=catalog)
    settings.debug = debug
    settings._catalog_obj = None


def _print_error(message: str, hint: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        console.print(f"[yellow]hint:[/] {escape(hint)}")




def main() -> None:
    app(prog_name="mobilenet-zoo")


# Command modules register themselves on `app` when imported.
from . import catalog_cmds, fetch_cmds, run_cmds  # noqa: E402,F401
from . import train_cmds  # noqa: E402,F401 - finetune, export
