"""Who hears about downloads: a process-wide default progress callback and warning sink.

The library never prints progress by itself. A program (the CLI, a notebook) installs a
callback once with :func:`install`, and every download made through
``zoo.fetching.fetcher.options_from_env`` reports to it - including the ones hidden inside
``restore``, ``classify``, ``bench`` or any later command - without threading a
parameter through every function. Explicit ``FetchOptions(progress=...)`` still wins.

A callback is ``progress(entry, done_bytes, total_bytes_or_None)``; it may be called
from a helper thread (see ``zoo.fetching.download``), one call at a time per download.
``resolve`` turns what ``zoo.fetch(progress=...)`` accepts (True, a tqdm class, a
callback) into such a callback; ``TqdmBridge`` is the small adapter to tqdm's API.
"""

from __future__ import annotations

from typing import Any, Callable

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


def resolve(progress: object) -> tuple[ProgressCallback | None, Callable[[], None]]:
    """Turn ``fetch(progress=...)`` into (callback, close).

    ``True`` means a ``tqdm.auto`` bar (a widget in a notebook, text in a terminal);
    a class (``tqdm.tqdm``, ``tqdm.notebook.tqdm``, anything with tqdm's ``update``,
    ``reset`` and ``close``) is used like ``hf_hub_download(tqdm_class=...)``; any other
    callable is a callback ``(entry, done, total)``; ``False`` shows nothing; ``None``
    keeps the installed default (the CLI's bar, or nothing).
    """
    if progress is None:
        return default_progress(), lambda: None
    if progress is False:
        return None, lambda: None
    if progress is True:
        from tqdm.auto import tqdm

        progress = tqdm
    if isinstance(progress, type):
        bars = TqdmBridge(progress)
        return bars, bars.close
    if callable(progress):
        return progress, lambda: None  # type: ignore[return-value]
    raise TypeError(f"progress must be True, False, None, a tqdm class or a callback, not {progress!r}")


class TqdmBridge:
    """A progress callback drawing one tqdm bar per model, in bytes.

    A download that restarts from zero (a server ignoring ``Range``) rewinds the bar
    instead of counting the same bytes twice.
    """

    def __init__(self, tqdm_class: type):
        self.tqdm_class = tqdm_class
        self._bars: dict[str, tuple[Any, int]] = {}  # model id -> (bar, bytes it shows)

    def __call__(self, entry: object, done: int, total: int | None) -> None:
        key = str(getattr(entry, "id", entry))
        if key not in self._bars:
            bar = self.tqdm_class(total=total, desc=key, unit="B", unit_scale=True, unit_divisor=1024)
            self._bars[key] = (bar, 0)
        bar, shown = self._bars[key]
        if done < shown:
            bar.reset(total=total)
            shown = 0
        if done > shown:
            bar.update(done - shown)
        self._bars[key] = (bar, done)

    def close(self) -> None:
        for bar, _ in self._bars.values():
            bar.close()
        self._bars.clear()
