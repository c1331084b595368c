"""Every error the zoo raises on purpose.

Each error carries what went wrong and what the user should do next (``hint``), and its
facts as fields set by its constructor. Messages speak the Python API: a bad argument is
named as the parameter (``max_macs must be >= 0``) and listed in ``params``, so the CLI can
spell it as its flag (``--max-macs``). The CLI formats every error in one place
(``cli/errors.py``); nothing else prints tracebacks.
Classes also inherit the closest built-in so ``except FileNotFoundError`` etc. work.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class: a message for the user plus an optional hint on how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, params: tuple[str, ...] = ()):
        from ._util.redact import redact

        message, hint = redact(message), redact(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint
        # API parameter names the message and hint mention (e.g. "max_macs"), for front ends
        # that spell them differently (the CLI's --max-macs).
        self.params = tuple(params)

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class CatalogError(ZooError, ValueError):
    """The catalog file is missing, malformed or breaks the schema."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 entry_id: str | None = None, hint: str | None = None, params: tuple[str, ...] = ()):
        where = []
        if path:
            where.append(f"{path}" + (f":{line}" if line else ""))
        if entry_id:
            where.append(f"entry {entry_id!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message, hint, params=params)
        self.path, self.line, self.entry_id = path, line, entry_id


class UnknownModelError(ZooError, KeyError):
    """A model name that matches no catalog id or alias."""

    exit_code = 2

    def __init__(self, name: str, suggestions: list[str]):
        hint = ("did you mean: " + ", ".join(suggestions) + "?") if suggestions else \
            "run `mobilenet-zoo list` to see every model id"
        super().__init__(f"unknown model {name!r}", hint)
        self.name, self.suggestions = name, suggestions

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return ZooError.__str__(self)


class UsageError(ZooError, ValueError):
    """An argument value that makes no sense (negative budget, bad device...); ``params`` names it."""

    exit_code = 2


class UnexpectedError(ZooError):
    """A bug of ours met while handling one model of several: reported with the others (exit 3).

    ``cause`` is the original exception (also chained as ``__cause__``) for a debug traceback.
    """

    exit_code = 3

    def __init__(self, model_id: str, cause: BaseException):
        from ._util.redact import redact

        super().__init__(f"[{model_id}] unexpected {type(cause).__name__}: {redact(str(cause))}",
                         "this is a bug in mobilenet-zoo: please report it, with this model's traceback")
        self.model_id, self.cause = model_id, cause
        self.__cause__ = cause


class NothingFitsError(ZooError):
    """`pick` found no model within the limits."""


class DownloadError(ZooError, OSError):
    """The network or a mirror failed to deliver a file."""

    def __init__(self, message: str, *, model_id: str | None = None, url: str | None = None,
                 hint: str | None = None, params: tuple[str, ...] = ()):
        parts = [p for p in (model_id, url) if p]
        super().__init__((" ".join(f"[{p}]" for p in parts[:1]) + " " if parts else "") + message
                         + (f" (url: {url})" if url else ""), hint, params=params)
        self.model_id, self.url = model_id, url


class IntegrityError(ZooError):
    """Bytes on disk or on the wire are not the bytes we expected (sha256 / size)."""

    def __init__(self, message: str, hint: str | None = None, *, model_id: str | None = None,
                 url: str | None = None, expected_sha256: str | None = None, actual_sha256: str | None = None,
                 expected_size: int | None = None, actual_size: int | None = None, params: tuple[str, ...] = ()):
        super().__init__(message, hint, params=params)
        self.model_id, self.url = model_id, url
        self.expected_sha256, self.actual_sha256 = expected_sha256, actual_sha256
        self.expected_size, self.actual_size = expected_size, actual_size


class UnsafeArchiveError(ZooError):
    """An archive member that could escape the cache or is not a plain file or directory."""

    def __init__(self, message: str, *, archive: str | None = None, member: str | None = None,
                 hint: str | None = None):
        where = f"{archive}: " if archive else ""
        what = f"member {member!r}: " if member else ""
        super().__init__(f"refusing to unpack {where}{what}{message}",
                         hint or "the archive is not a genuine upstream tarball; nothing was unpacked")
        self.archive, self.member = archive, member


class CacheError(ZooError, OSError):
    """The cache directory cannot be used (unwritable, full, missing entry offline...)."""


class OfflineError(CacheError):
    """``offline`` was asked for and the model is neither cached nor on a file mirror."""


class RestoreError(ZooError):
    """A checkpoint, frozen graph or TFLite file cannot be turned into a working model."""


class MissingDependencyError(ZooError, ImportError):
    """An optional runtime (TensorFlow, LiteRT, Pillow, matplotlib) is not installed."""

    def __init__(self, package: str, feature: str, extra: str = "tf"):
        super().__init__(f"{feature} needs {package}, which is not installed", tf_extra_hint(extra))
        self.package = package


# Modules that come with the [tf] extra, by import name -> distribution name.
TF_EXTRA_MODULES = {"numpy": "numpy", "tensorflow": "tensorflow", "keras": "tensorflow",
                    "ai_edge_litert": "ai-edge-litert", "PIL": "pillow", "matplotlib": "matplotlib"}


def tf_extra_hint(extra: str = "tf") -> str:
    """The exact command that installs an extra (default: the TensorFlow/LiteRT runtimes),
    from PyPI or from a source checkout."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "zoo").is_dir():  # running from a clone
        return f"install the [{extra}] extra: cd {root} && pip install '.[{extra}]'"
    return f"install the [{extra}] extra: pip install 'mobilenet-zoo[{extra}]'"


class DataError(ZooError, ValueError):
    """A labelled data set (`eval --data`) that cannot be read as given: layout, label, record."""

    exit_code = 2


class SourcesFailed(DownloadError):
    """Every source of a download failed: ``failures`` keeps each (source, error) in order."""

    def __init__(self, model_id: str, failures: list, hint: str | None = None):
        lines = [f"{source.label}: " + error.message.replace("\n", "\n    ")
                 + (f"\n    hint: {error.hint}" if error.hint else "") for source, error in failures]
        super().__init__("every source failed:\n  " + "\n  ".join(lines), model_id=model_id,
                         hint=hint or "check the mirrors' contents and your network (mirrors, offline, "
                                      "proxy settings); each source's own hint is shown above",
                         params=("mirrors", "offline"))
        self.failures = list(failures)
