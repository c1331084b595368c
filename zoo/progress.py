"""Who hears about downloads: a process-wide default progress callback and warning sink.

The library never prints progress by itself. A program (the CLI, a notebook) installs a
callback once with :func:`install`, and every download made through
``zoo.fetching.options_from_env`` reports to it - including the ones hidden inside
``restore``, ``classify``, ``bench`` or any later command - without threading a
parameter through every function. Explicit ``FetchOptions(progress=...)`` still wins.

A callback is ``progress(entry, done_bytes, total_bytes_or_None)``; it may be called
from a helper thread (see ``zoo.download``), one call at a time per download.
"""

from __future__ import annotations

from typing import Callable

ProgressCallback = Callable[[object, int, "int | None"], None]
WarnCallback = Callable[[str], None]

_progress: ProgressCallback | None = None
_warn: WarnCallback | None = None


def install(progress: ProgressCallback | None = None, warn: WarnCallback | None = None) -> None:
    """Make ``progress`` / ``warn`` the defaults for downloads started from now on (None clears)."""
    global _progress, _warn
    _progress, _warn = progress, warn


def default_progress() -> ProgressCallback | None:
    return _progress


def default_warn() -> WarnCallback | None:
    return _warn
