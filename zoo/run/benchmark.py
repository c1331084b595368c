"""Single-image latency on this machine, recorded as the device `local`.

Each model gets ``warmup`` untimed calls (first-call allocation, XNNPACK packing,
graph pruning) and then ``runs`` timed calls with ``time.perf_counter`` on one fixed
image; the median and the 90th percentile are kept. Results go to the per-machine
profile (``zoo.catalog.profile.record``) as ``local`` and ``local-<format>-<threads>t``, which
the catalog merges in for `pick`, `list` and `plot`.

Threads: TFLite takes them per interpreter and frozen graphs per session, so any
value works at any time. Checkpoints run on Keras, whose thread pools are global to
the process and fixed once TensorFlow has run its first op; a later, different
request cannot take effect and is reported as an error instead of being recorded
under the wrong name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .._util.progress import Reporter, Task
from ..catalog.registry import Catalog, Entry
from ..errors import UsageError
from ..formats.base import RestoredModel, configure_tf_threads, normalize_format
from ..formats.resolve import locate



@dataclass(frozen=True)
class BenchResult:
    """One model's latency here: what `bench` prints and records as device ``local``."""

    id: str
    format: str
    threads: int | None  # the model's own thread count (a restored model keeps its own)
    median_ms: float
    p90_ms: float

    def to_json(self) -> dict[str, Any]:
        """The `bench --json` record."""
        return {"id": self.id, "format": self.format, "threads": self.threads,
                "median_ms": self.median_ms, "p90_ms": self.p90_ms}

    def record(self) -> None:
        """Save it in this machine's profile (``zoo.catalog.profile``), where `pick` and `plot` find it."""
        from ..catalog.profile import record as record_latency

        record_latency(self.id, self.format, self.threads, self.median_ms, self.p90_ms)


def time_calls(model: Callable[[np.ndarray], Any], image: np.ndarray, runs: int, warmup: int,
               on_run: Callable[[int], None] | None = None) -> list[float]:
    """Milliseconds for each of ``runs`` calls of ``model(image)`` after ``warmup`` calls."""
    for _ in range(warmup):
        model(image)
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        model(image)
        samples.append((time.perf_counter() - start) * 1000.0)
        if on_run:
            on_run(i + 1)
    return samples


def summarize(samples: list[float]) -> tuple[float, float]:
    """(median, p90) in ms."""
    arr = np.asarray(samples, dtype=np.float64)
    return float(np.median(arr)), float(np.percentile(arr, 90))


def bench_image(size: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A fixed pseudo-random image in [-1, 1] (latency does not depend on content)."""
    return np.random.default_rng(seed).uniform(-1, 1, (1, *size)).astype(np.float32)


def bench(models: Iterable[str | Path | Entry | RestoredModel], format: str | None = None, threads: int = 1,
          runs: int = 50, warmup: int = 5, *, catalog: Catalog | None = None, cache_dir: Path | None = None,
          record: bool = True, progress: object = None) -> list[BenchResult]:
    """Time each model and return one :class:`BenchResult` per model, in order.

    ``models``: restored models (whose own format and threads are then used), or anything
    ``zoo.formats.resolve.locate`` accepts; ``format`` None: each file's own, else the model's default (``default_format``).
    ``progress``: the contract every long call shares (``zoo._util.progress``): True, a tqdm
    class, or ``progress(task, done, runs)`` after every timed run (``task.id`` the model).
    """
    fmt = normalize_format(format) if format is not None else None
    if runs < 1:
        raise UsageError(f"runs must be at least 1, got {runs}", params=("runs",))
    if warmup < 0:
        raise UsageError(f"warmup must be 0 or more, got {warmup}", params=("warmup",))
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}", params=("threads",))
    refs = [item if isinstance(item, RestoredModel) else locate(item, fmt, catalog=catalog) for item in models]
    if any(not isinstance(r, RestoredModel) and r.format == "ckpt" for r in refs) \
            and not configure_tf_threads(threads):
        raise UsageError(f"TensorFlow is already running with other thread pools; threads={threads} "
                         "cannot apply to checkpoints in this process",
                         hint="benchmark checkpoints with different threads in separate processes",
                         params=("threads",))
    results = []
    with Reporter(progress) as report:
        for ref in refs:  # every model found (every name checked) before the first is fetched
            result = _bench_one(ref, threads, runs, warmup, cache_dir, report)
            results.append(result)
            if record:
                result.record()
    return results


def _bench_one(ref: Any, threads: int | None, runs: int, warmup: int, cache_dir: Path | None,
               report: Reporter) -> BenchResult:
    model = ref if isinstance(ref, RestoredModel) else ref.load(cache_dir=cache_dir, threads=threads)
    task = Task(model.entry.id, "bench", "run")
    samples = time_calls(model, bench_image(model.input_size), runs, warmup,
                         on_run=lambda done: report(task, done, runs))
    median, p90 = summarize(samples)
    return BenchResult(model.entry.id, model.format, getattr(model, "threads", None) or threads,
                       round(median, 4), round(p90, 4))
