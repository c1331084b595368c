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
from ..formats.base import RestoredModel, configure_tf_threads, normalize_format, top1_agreement
from ..formats.resolve import locate



@dataclass(frozen=True)
class BenchResult:
    """One model's latency here: what `bench` prints and records as device ``local``."""

    id: str
    format: str
    threads: int | None  # the model's own thread count (a restored model keeps its own)
    median_ms: float
    p90_ms: float
    runtime: str = "litert"
    precision: str | None = None  # OpenVINO's inference precision in force; None: the file's own types
    max_abs_dp: float | None = None  # vs the reference row of `--runtime all` (the format's own runtime)
    top1_agreement: float | None = None  # percent of the check images with the reference's best class

    def to_json(self) -> dict[str, Any]:
        """The `bench --json` record."""
        return {"id": self.id, "format": self.format, "runtime": self.runtime, "threads": self.threads,
                "precision": self.precision, "median_ms": self.median_ms, "p90_ms": self.p90_ms,
                "max_abs_dp": self.max_abs_dp, "top1_agreement": self.top1_agreement}

    def record(self) -> None:
        """Save it in this machine's profile (``zoo.catalog.profile``), where `pick` and `plot` find it."""
        from ..catalog.profile import record as record_latency
        from ..formats.kinds import DEFAULT_RUNTIME

        own = DEFAULT_RUNTIME.get(self.format) == self.runtime and self.precision in (None, "f32")
        record_latency(self.id, self.format, self.threads, self.median_ms, self.p90_ms, runtime=self.runtime,
                       own_runtime=own)


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


ALL_RUNTIMES = "all"
#: Images every row of `--runtime all` is compared on (latency does not depend on them).
CHECK_IMAGES = 4


def installed_runtimes() -> list[str]:
    """The runtimes whose package imports here, in ``RUNTIMES`` order."""
    import importlib.util

    from ..formats.kinds import RUNTIME_MODULE, RUNTIMES

    return [r for r in RUNTIMES if importlib.util.find_spec(RUNTIME_MODULE[r]) is not None]


def runtime_plan(ref: Any, runtime: str | None) -> list[tuple[str, str | None]]:
    """(format, runtime) pairs to time for one located model: its own format on ``runtime``, or
    for ``"all"`` every installed runtime on every format the model has, each format's own
    runtime first (the reference the others are compared with)."""
    from ..formats.kinds import DEFAULT_RUNTIME, FORMATS, ROLE_OF_FORMAT, RUNTIME_FORMATS

    if runtime != ALL_RUNTIMES:
        return [(ref.format, runtime)]
    formats = ([f for f in FORMATS if ROLE_OF_FORMAT[f] in ref.entry.files] if ref.kind == "catalog" else [ref.format])
    formats.sort(key=lambda f: f != ref.format)
    here = installed_runtimes()
    plan = []
    for fmt in formats:
        able = [r for r in here if fmt in RUNTIME_FORMATS[r]]
        able.sort(key=lambda r: r != DEFAULT_RUNTIME[fmt])
        plan += [(fmt, r) for r in able]
    return plan


def bench(models: Iterable[str | Path | Entry | RestoredModel], format: str | None = None, threads: int = 1,
          runs: int = 50, warmup: int = 5, *, catalog: Catalog | None = None, cache_dir: Path | None = None,
          record: bool = True, progress: object = None, runtime: str | None = None,
          precision: str | None = None) -> list[BenchResult]:
    """Time each model and return one :class:`BenchResult` per model and runtime, in order.

    ``models``: restored models (whose own format and threads are then used), or anything
    ``zoo.formats.resolve.locate`` accepts; ``format`` None: each file's own, else the model's default (``default_format``).
    ``runtime``: one of ``zoo.formats.kinds.RUNTIMES`` (None: the format's own), or ``"all"``:
    every installed runtime on every format the model has, each row compared with the
    format's own runtime on ``CHECK_IMAGES`` fixed images (``max_abs_dp``, ``top1_agreement``).
    ``precision``: OpenVINO's (default f32).
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
    if runtime == ALL_RUNTIMES and fmt is not None:
        raise UsageError("runtime='all' times every file the model has; leave format out",
                         params=("runtime", "format"))
    refs = [item if isinstance(item, RestoredModel) else locate(item, fmt, catalog=catalog) for item in models]
    plans = [[(r.format, None)] if isinstance(r, RestoredModel) else runtime_plan(r, runtime) for r in refs]
    if runtime not in (None, ALL_RUNTIMES):
        from ..formats.resolve import check_runtime

        for ref, plan in zip(refs, plans):  # every pairing checked before the first fetch
            if not isinstance(ref, RestoredModel):
                check_runtime(plan[0][0], runtime, {"precision": precision})
    if any(f == "ckpt" and not isinstance(r, RestoredModel) for r, plan in zip(refs, plans) for f, _ in plan) \
            and not configure_tf_threads(threads):
        raise UsageError(f"TensorFlow is already running with other thread pools; threads={threads} "
                         "cannot apply to checkpoints in this process",
                         hint="benchmark checkpoints with different threads in separate processes",
                         params=("threads",))
    results = []
    with Reporter(progress) as report:
        for ref, plan in zip(refs, plans):  # every model found (every name checked) before the first is fetched
            for result in _bench_plan(ref, plan, threads, runs, warmup, cache_dir, report, runtime == ALL_RUNTIMES,
                                      precision):
                results.append(result)
                if record:
                    result.record()
    return results


def _bench_plan(ref: Any, plan: list[tuple[str, str | None]], threads: int | None, runs: int, warmup: int,
                cache_dir: Path | None, report: Reporter, compare: bool, precision: str | None) -> Iterable[BenchResult]:
    from dataclasses import replace

    reference: dict[str, np.ndarray] = {}  # format -> the own runtime's answers on the check images
    for fmt, runtime in plan:
        if isinstance(ref, RestoredModel):
            model = ref
        else:
            options = {"threads": threads, "runtime": runtime}
            if runtime == "openvino":
                options["precision"] = precision
            model = replace(ref, format=fmt).load(cache_dir=cache_dir, **options)
        result = _bench_one(model, threads, runs, warmup, report)
        if compare:
            answers = model(np.concatenate([bench_image(model.input_size, seed) for seed in range(CHECK_IMAGES)]))
            base = reference.setdefault(fmt, answers)
            result = replace(result, max_abs_dp=round(float(np.abs(answers - base).max()), 6),
                             top1_agreement=round(top1_agreement(answers, base), 1))
        yield result


def _bench_one(model: RestoredModel, threads: int | None, runs: int, warmup: int, report: Reporter) -> BenchResult:
    task = Task(model.entry.id, "bench", "run")
    samples = time_calls(model, bench_image(model.input_size), runs, warmup,
                         on_run=lambda done: report(task, done, runs))
    median, p90 = summarize(samples)
    return BenchResult(model.entry.id, model.format, getattr(model, "threads", None) or threads,
                       round(median, 4), round(p90, 4), runtime=model.runtime,
                       precision=getattr(model, "precision", None))
