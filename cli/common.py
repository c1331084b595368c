"""What every command module shares: the typer app, the global options, common option types.

Command modules (``catalog_cmds``, ``fetch_cmds``, ``run_cmds``, ``eval_cmds``) import this
module and register their commands on ``app``; ``app.py`` declares the global options and
imports the command modules, so nothing imports ``app.py`` back.

The global options reach commands as a value: ``GlobalOptions``, stored in the root typer
context's ``obj`` (``global_options()`` returns it). The library sees the same cache,
mirrors and offline mode through ``zoo.config.overrides`` for exactly the command's run,
never through ``os.environ``.

Must stay light (typer only): `list` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

try:  # typer 0.28 carries its own copy of click; earlier versions use click itself
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import get_current_context

from zoo import config
from zoo.catalog.selection import COSTS
from zoo.formats.kinds import DEFAULT_FORMAT_ORDER, FORMATS, PRECISIONS, RUNTIMES
from zoo.errors import UsageError


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the command (or their environment variables), for one run."""

    catalog: Optional[Path] = None
    cache_dir: Optional[Path] = None
    mirrors: Optional[tuple[str, ...]] = None  # None: $MOBILENET_ZOO_MIRROR / none
    offline: bool = False
    debug: bool = False
    log_level: Optional[str] = None  # "debug" (--verbose), "warning" (--quiet), None: the default

    def config_overrides(self) -> dict:
        """What the library must see for this run (``zoo.config.overrides``)."""
        return {"cache_dir": self.cache_dir, "mirrors": self.mirrors, "offline": self.offline or None,
                "catalog": self.catalog, "log_level": self.log_level}


def _root_context() -> typer.Context | None:
    ctx = get_current_context(silent=True)
    return ctx.find_root() if ctx is not None else None


def global_options() -> GlobalOptions:
    """This run's global options (the defaults and environment when no command line parsed them)."""
    root = _root_context()
    if root is not None and isinstance(root.obj, GlobalOptions):
        return root.obj
    return GlobalOptions(debug=config.debug())


def debug() -> bool:
    """Whether --debug (or $MOBILENET_ZOO_DEBUG) asks for tracebacks."""
    return global_options().debug or config.debug()


def load_catalog():
    """The catalog for this run (loaded once per command; includes this machine's measured latencies)."""
    root = _root_context()
    if root is not None and "catalog" in root.meta:
        return root.meta["catalog"]
    from zoo.catalog import load_catalog as load

    catalog = load(global_options().catalog)
    if root is not None:
        root.meta["catalog"] = catalog
    return catalog


def cache_dir() -> Path:
    """The cache directory for this run: --cache-dir, $MOBILENET_ZOO_CACHE or the platform's."""
    chosen = global_options().cache_dir
    return chosen.expanduser() if chosen is not None else config.cache_dir()


def check_device(catalog, device: Optional[str]) -> None:
    """A --device must be one the catalog (or this machine's `bench` profile) has figures for."""
    if device and device not in catalog.devices():
        hint = "known devices: " + ", ".join(catalog.devices())
        if device.startswith("local-") and device.count("-") == 1 and device != "local-fastest":  # --runtime X
            runtime = device.split("-", 1)[1]
            hint = (f"nothing measured on {runtime} here yet: run `mobilenet-zoo bench MODEL --runtime "
                    f"{runtime}` (or --runtime all) first")
            raise UsageError(f"no model has a latency figure on the {runtime} runtime", hint)
        if device.startswith("local"):
            hint = "no measurement on this machine yet: run `mobilenet-zoo bench MODEL` first; " + hint
        raise UsageError(f"no model has a latency figure for device {device!r}", hint)


NO_MATCH = "no model matches these filters"


def exit_no_match() -> None:
    """What every command says, with exit code 1, when its filters leave no model (whatever was printed)."""
    from .errors import print_error

    print_error(NO_MATCH)
    raise typer.Exit(1)


class ZooGroup(TyperGroup):
    """The root command group: every exception a command lets out becomes one formatted
    message and an exit code (``errors.report``). Doing it here (not in `main`) means
    typer's test runner sees exactly what users see."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from .help_text import tidy

        tidy(self)  # plain placeholders in --help (TEXT, N, PATH), never typer's type names

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `mobilenet-zoo list | head -1`: the reader left; so do we, quietly
            silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own flow and usage errors
            raise
        except (Exception, KeyboardInterrupt) as exc:
            from .errors import report

            code = report(exc, debug=debug(), command=ctx.invoked_subcommand)
            raise typer.Exit(code) from None


# Quietly, with status 1: what click and rich do when the reader of stdout goes away, so every
# command behaves the same whichever of them noticed first. (Not exit 3: not a bug of ours.)
EXIT_BROKEN_PIPE = 1


def silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush cannot fail again on a closed pipe."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


app = typer.Typer(
    name="mobilenet-zoo",
    cls=ZooGroup,
    help="Find, fetch, verify and run every published TensorFlow MobileNet (v1, v2, v3, EdgeTPU).\n\n"
         "Example: mobilenet-zoo pick --max-macs 300 --quantized && mobilenet-zoo fetch v1_1.0_224",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (model names too)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ------------------------------------------------------------------ option types used by several commands
MODEL_HELP = ("Model: a catalog id or alias (NAME@RELEASE for a release), a finetune OUT (or a file in it), "
              "a cache entry or unpacked model folder, or a local .tflite / .pb / checkpoint.")
def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A typer choice built from the library's own tuple: one list of names, never restated here."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)  # type: ignore[return-value]


Cost = choices("Cost", COSTS)
ModelFormat = choices("ModelFormat", FORMATS)
Runtime = choices("Runtime", RUNTIMES)
Precision = choices("Precision", PRECISIONS)


PickRuntime = choices("PickRuntime", RUNTIMES + ("any",))


def pick_runtime_option():
    return typer.Option(None, "--runtime", "-r", show_default=False,
                        help="With --device local: rank by the latest figure `bench` measured on this runtime, "
                             "or any: by the fastest measured on any runtime, format and thread count.")


def device_for_runtime(device: Optional[str], runtime) -> Optional[str]:
    """--device local --runtime X -> the profile's device of that runtime (``local-X``, ``local-fastest``)."""
    if runtime is None:
        return device
    from zoo.catalog.profile import FASTEST, LOCAL, runtime_device
    from zoo.errors import UsageError

    if device not in (None, LOCAL):
        raise UsageError(f"--runtime ranks by this machine's figures; it does not apply to --device {device}",
                         hint="use --device local --runtime ..., or leave --runtime out", params=("runtime",))
    return FASTEST if runtime.value == "any" else runtime_device(runtime.value)


def runtime_option(help: str = "Which engine runs the model: litert, tensorflow, onnxruntime (a .tflite is "
                               "converted with tf2onnx on the way in) or openvino (reads .tflite and ONNX itself). "
                               "Default: the format's own (LiteRT for tflite, TensorFlow for ckpt and frozen)."):
    return typer.Option(None, "--runtime", "-r", show_default=False, help=help)


def precision_option():
    return typer.Option(None, "--precision", show_default=False,
                        help="openvino only: inference precision f32 (default), bf16 or f16.")


def openvino_device_option():
    return typer.Option(None, "--openvino-device", metavar="NAME", show_default=False,
                        help="openvino only: the device to compile for (default CPU).")


def runtime_options(runtime, precision, device) -> dict:
    """The library's keyword arguments for --runtime, --precision and --openvino-device."""
    return {"runtime": runtime.value if runtime is not None else None,
            "precision": precision.value if precision is not None else None, "openvino_device": device}


def family_option(help: str = "v1, v2, v3 or edgetpu; repeat for several."):
    return typer.Option(None, "--family", "-f", help=help)


def quantized_option(help: str = "Only quantized (uint8) or only float models."):
    return typer.Option(None, "--quantized/--float", help=help)


def json_option(help: str = "Print JSON instead of a table."):
    return typer.Option(False, "--json", help=help)


def device_option(help: str = "Device for latency figures: pixel1, pixel2, pixel3, pixel3-cpu4, pixel3-gpu, "
                              "pixel3-nnapi, pixel4, pixel4-edgetpu, or local (measured by `bench`)."):
    return typer.Option(None, "--device", "-d", help=help)


def model_format_option():
    return typer.Option(None, "--format", "-F", show_default=False,
                        help="Which file of the model to run: tflite (LiteRT), ckpt (Keras) or frozen (TF graph). "
                             f"Default: a local file's own format, else the first the model has of "
                             f"{', '.join(DEFAULT_FORMAT_ORDER)}.")


def format_value(fmt: "ModelFormat | None") -> "str | None":
    return fmt.value if fmt is not None else None


def threads_option(help: str = "CPU threads for the runtime (default: the runtime's own choice)."):
    return typer.Option(None, "--threads", "-t", min=1, help=help)


def no_fake_quant_option():
    return typer.Option(False, "--no-fake-quant",
                        help="ckpt of a _quant model only: restore the float network, skipping the checkpoint's "
                             "fake-quant ranges (default: the fake-quant network it was trained as).")


def fake_quant_value(no_fake_quant: bool, fmt) -> Optional[bool]:
    """--no-fake-quant -> the library's ``fake_quant=False``; refused outside --format ckpt."""
    if not no_fake_quant:
        return None
    if fmt is None or fmt.value != "ckpt":
        from zoo.errors import UsageError

        raise UsageError("--no-fake-quant applies to --format ckpt only",
                         hint="add --format ckpt (a .tflite or frozen graph is quantized as published)")
    return False
