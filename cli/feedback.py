"""What the CLI says while it works: download progress, notes, warnings, and the runtimes' noise.

* Progress: on a terminal (stderr) a rich bar per download; otherwise (CI logs, pipes) one
  plain line when a download starts, then every ``LINE_EVERY_PCT`` percent or
  ``LINE_EVERY_S`` seconds, and when it ends. Installed as the library's default
  (``zoo._util.progress``), so downloads inside restore/classify/bench report too.
* Notes: the library logs resumes, restarts and retries on the ``zoo`` logger; they are
  printed as ``note: ...`` (above a live bar, never through it).
* Levels: ``--quiet`` / $MOBILENET_ZOO_QUIET (warnings and errors only), default (notes and
  progress), ``--verbose`` / $MOBILENET_ZOO_LOG_LEVEL=debug (also TensorFlow's, LiteRT's and
  absl's own logs, hidden otherwise).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from zoo import config
from zoo._util.units import format_bytes

LINE_EVERY_PCT = 10
LINE_EVERY_S = 5.0


class LineProgress:
    """Progress as occasional plain lines (for logs): start, every 10% or 5 s, end."""

    def __init__(self, stream=None, clock=time.monotonic):
        self.stream = stream  # None: whatever sys.stderr is at the time
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # id -> (time, percent step) of the last line

    def __call__(self, task, done: int, total: int | None) -> None:
        if getattr(task, "unit", "B") != "B":
            return  # downloads only: commands draw their own work (eval, bench, finetune)
        name = getattr(task, "id", str(task))
        now = self.clock()
        with self._lock:
            pct = int(done * 100 / total) if total else None
            step = (pct // LINE_EVERY_PCT) if pct is not None else 0
            last = self._last.get(name)
            finished = total is not None and done >= total
            if last is not None and not finished and step <= last[1] and now - last[0] < LINE_EVERY_S:
                return
            if last is not None and finished and last[1] == -1:
                return  # already said it finished
            self._last[name] = (now, -1 if finished else step)
            size = format_bytes(done) + (f" of {format_bytes(total)} ({pct}%)" if total else "")
            verb = "downloaded" if finished else "downloading"
            print(f"{name}: {verb} {size}", file=self.stream or sys.stderr, flush=True)

    def close(self) -> None:
        pass


class BarProgress:
    """A rich bar per download on the terminal (started on the first byte, kept when done)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._bars = None
        self._tasks: dict[str, int] = {}

    def __call__(self, task, done: int, total: int | None) -> None:
        if getattr(task, "unit", "B") != "B":
            return  # downloads only: commands draw their own work (eval, bench, finetune)
        name = getattr(task, "id", str(task))
        with self._lock:
            if self._bars is None:
                from rich.console import Console
                from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                           TransferSpeedColumn)
                from rich.table import Column

                console = Console(stderr=True)
                columns = [TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                           BarColumn(bar_width=None), DownloadColumn()]
                if console.width >= len(name) + 50:  # room for speed and ETA; else never squeeze the id
                    columns += [TransferSpeedColumn(), TimeRemainingColumn()]
                self._bars = Progress(*columns, console=console, transient=False)
                self._bars.start()
            if name not in self._tasks:
                self._tasks[name] = self._bars.add_task(name, total=total)
            self._bars.update(self._tasks[name], completed=done, total=total)

    def close(self) -> None:
        with self._lock:
            if self._bars is not None:
                self._bars.stop()
                self._bars = None
                self._tasks.clear()


class _NoteHandler(logging.Handler):
    """``zoo`` log records as ``note:`` / ``warning:`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = {logging.DEBUG: "debug", logging.INFO: "note"}.get(record.levelno, record.levelname.lower())
            sys.stderr.write(f"{prefix}: {record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - never let a message break a command
            self.handleError(record)


_reporter = None


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def setup() -> None:
    """Apply the current level (config.log_level) to progress, notes and runtime logs, for one command."""
    global _reporter
    from zoo._util import progress

    close()
    level = config.log_level()
    logger = logging.getLogger("zoo")
    logger.addHandler(_NoteHandler())
    logger.setLevel(getattr(logging, level.upper()))
    logger.propagate = False
    _reporter = None if config.quiet() else (BarProgress() if _stderr_is_terminal() else LineProgress())
    progress.install(_reporter, lambda msg: print(f"warning: {msg}", file=sys.stderr))
    quiet_runtimes(not config.verbose())


def reporter():
    """The progress callback commands should pass on (None when quiet)."""
    return _reporter


def close() -> None:
    """End of a command: stop a live bar and take the CLI's hooks out of the library again."""
    global _reporter
    from zoo._util import progress

    if _reporter is not None:
        _reporter.close()
        _reporter = None
    progress.install(None, None)
    logger = logging.getLogger("zoo")
    for handler in [h for h in logger.handlers if isinstance(h, _NoteHandler)]:
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def quiet_runtimes(on: bool = True) -> None:
    """Ask TensorFlow, LiteRT and absl to keep their start-up chatter to themselves.

    Must run before they are imported: TF_CPP_MIN_LOG_LEVEL=3 hides the CUDA/oneDNN notices,
    and Python warnings from those packages are filtered. LiteRT's "Created TensorFlow Lite
    XNNPACK delegate" comes from C++ straight to the stderr file descriptor; see
    ``zoo._util.runtime_logs`` for how it is hidden.
    """
    if on:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
        import warnings

        for module in ("tensorflow", "keras", "tf_keras", "absl", "ai_edge_litert", "google.protobuf"):
            warnings.filterwarnings("ignore", module=module + r"(\..*)?")
