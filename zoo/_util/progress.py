"""The one ``progress=`` contract of ``fetch``, ``bench``, ``evaluate`` and ``finetune``, and who hears.

What each of them accepts as ``progress``:

* ``True``: a ``tqdm.auto`` bar per task (a widget in a notebook, text in a terminal);
* a tqdm class (``tqdm.tqdm``, ``tqdm.notebook.tqdm``, anything with tqdm's ``update``,
  ``reset``, ``set_postfix`` and ``close``), used like ``hf_hub_download(tqdm_class=...)``;
* any other callable: called as ``progress(task, done, total)``, where ``task`` is a
  :class:`Task` (``task.id`` the model, ``task.desc`` what is being done, ``task.unit``,
  ``task.stats`` the running figures: top-1, loss, ...), ``done`` and ``total`` counts of
  ``task.unit`` (``total`` None when unknown); it may be called from a helper thread, one
  call at a time per task;
* ``False``: nothing; ``None``: what the running program installed with :func:`install`
  (the CLI's download bars), else nothing.

The library never prints: progress goes to these callbacks, notes to the ``zoo`` logger,
warnings through ``zoo.notices``. A program (the CLI, a notebook) installs a default callback
once, and every download made anywhere (inside ``restore``, ``classify``, ...) reports to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

@dataclass
class Task:
    """What a progress report is about: ``id`` (a model), ``desc`` (what is done to it), the
    ``unit`` counted, and the running figures in ``stats`` (updated in place as work goes on)."""

    id: str
    desc: str = "download"
    unit: str = "B"
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """One bar per key: the model and what is being done to it."""
        return f"{self.id} {self.desc}" if self.desc and self.desc != "download" else self.id


ProgressCallback = Callable[[Task, int, "int | None"], None]
WarnCallback = Callable[[str], None]

_progress: ProgressCallback | None = None
_warn: WarnCallback | None = None


def install(progress: ProgressCallback | None = None, warn: WarnCallback | None = None) -> None:
    """Make ``progress`` / ``warn`` the defaults for work started from now on (None clears)."""
    global _progress, _warn
    _progress, _warn = progress, warn


def default_progress() -> ProgressCallback | None:
    return _progress


def default_warn() -> WarnCallback | None:
    return _warn


def resolve(progress: object) -> tuple[ProgressCallback | None, Callable[[], None]]:
    """Turn a ``progress=`` argument (see the module docstring) into (callback or None, close)."""
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
    """A progress callback drawing one tqdm bar per task, in the task's unit, its stats as postfix.

    A count that goes back (a download restarting from zero because a server ignored ``Range``)
    rewinds the bar instead of counting the same bytes twice.
    """

    def __init__(self, tqdm_class: type):
        self.tqdm_class = tqdm_class
        self._bars: dict[str, tuple[Any, int]] = {}  # task key -> (bar, count it shows)

    def __call__(self, task: object, done: int, total: int | None) -> None:
        key = str(getattr(task, "key", getattr(task, "id", task)))
        unit = getattr(task, "unit", "B")
        if key not in self._bars:
            scaled = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
            bar = self.tqdm_class(total=total, desc=key, unit=unit, **scaled)
            self._bars[key] = (bar, 0)
        bar, shown = self._bars[key]
        if done < shown:
            bar.reset(total=total)
            shown = 0
        stats = getattr(task, "stats", None)
        if stats:
            bar.set_postfix({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in stats.items()}, refresh=False)
        if done > shown:
            bar.update(done - shown)
        self._bars[key] = (bar, done)

    def close(self) -> None:
        for bar, _ in self._bars.values():
            bar.close()
        self._bars.clear()


class Reporter:
    """``progress=`` resolved once for one call of a library function: ``report(task, done, total)``
    is safe to call whatever was asked for (nothing happens for ``False``); ``close()`` ends bars."""

    def __init__(self, progress: object):
        self.callback, self._close = resolve(progress)

    def __call__(self, task: Task, done: int, total: int | None) -> None:
        if self.callback is not None:
            self.callback(task, done, total)

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
