"""Top-1/top-5 of a model on a labelled image set, measured the way TF-slim's eval does.

    result = zoo.evaluate("v1_0.25_128_quant", "imagenet/val", limit=1000)
    result.top1, result.claimed_top1, result.to_json()

The model is found with the resolver every command uses (``zoo.formats.resolve.locate``):
catalog names (fetched if needed), fine-tuned OUTs, model folders and local files. The data set is opened and its labels checked
before the model is restored, so a typo fails before a download.

Speed: a LiteRT model runs as one one-thread copy per CPU, each in its own worker thread
that reads, decodes, preprocesses (``zoo.data.images``: TF-slim's central crop and bilinear
resize) and runs its images; LiteRT, simplejpeg and numpy let go of the GIL for the heavy
parts. The TensorFlow formats decode in worker threads ahead of the model, which runs
whole batches in the calling thread. At most a few chunks are in flight: memory stays flat
however large the set.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from .._util.progress import Reporter, Task
from ..catalog.registry import Catalog, Entry
from ..data.datasets import Dataset, LabelSpace, Sample, open_dataset
from ..errors import DataError, RestoreError, UsageError
from ..data.images import DEFAULT_CROP, check_crop, decode_failure, decode_pixels, preprocess_array
from .classification import top_k

if TYPE_CHECKING:
    from ..formats.base import RestoredModel

JSON_KEYS = ("id", "format", "runtime", "images", "top1", "top5", "claimed_top1", "claimed_top5", "images_per_s",
             "skipped", "compared", "top1_agreement")
# Batches that pay off per runtime: one graph/session call per batch for TensorFlow;
# LiteRT's upstream files have a fixed batch of 1 and gain nothing from resizing (bench_eval.py).
DEFAULT_BATCH = {"tflite": 1, "frozen": 32, "ckpt": 32}
PROGRESS_EVERY_S = 0.1
MAX_IN_FLIGHT = 256  # decoded images waiting for LiteRT copies (150-600 KB each)


@dataclass(frozen=True)
class EvalResult:
    """What `eval` measured. ``top1``/``top5`` are percentages, like the catalog's."""

    id: str
    format: str
    images: int
    top1: float
    top5: float
    claimed_top1: float | None
    claimed_top5: float | None
    images_per_s: float
    skipped: int
    data: str = ""
    seconds: float = 0.0
    skipped_images: tuple[tuple[str, str], ...] = ()   # (image, why) for each skipped image
    notes: tuple[str, ...] = field(default=())          # e.g. which checkpoint weights were used
    copies: int = 1                                     # one-thread LiteRT copies that ran side by side
    runtime: str = "litert"                             # the engine that answered (``kinds.RUNTIMES``)
    compared: "EvalResult | None" = None                # the same images through another format (``compare``)
    top1_agreement: float | None = None                 # % of images whose top-1 the two formats share
    top1_by_image: tuple[tuple[str, int], ...] = field(default=(), repr=False)  # (image, top-1 class)

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: exactly the documented keys (``compared``: the same object for
        the other format, or null)."""
        out = {key: getattr(self, key) for key in JSON_KEYS}
        if self.compared is not None:
            out["compared"] = self.compared.to_json()
        return out

    def margin(self, which: str = "top1") -> float:
        """Half-width (percentage points) of a 95% Wilson interval for a rate measured on ``images``
        (never 0, unlike the normal approximation, at 0% or 100%)."""
        if not self.images:
            return float("nan")
        p, n, z = getattr(self, which) / 100.0, self.images, 1.96
        return 100.0 * z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


@dataclass(frozen=True)
class _Failure:
    source: str
    reason: str


def _prepare(sample: Sample, size: tuple[int, int], crop: float) -> np.ndarray | _Failure:
    """Read, decode and preprocess one image in a worker thread; failures come back as values."""
    try:
        pixels = decode_pixels(sample.read_bytes())
    except Exception as exc:  # noqa: BLE001 - decode_failure sorts data problems from bugs
        reason = decode_failure(exc)
        if reason is None:
            raise
        return _Failure(sample.source, reason)
    return preprocess_array(pixels, size, crop)


def _prepare_chunk(chunk: list[Sample], size: tuple[int, int], crop: float) -> list[np.ndarray | _Failure]:
    return [_prepare(sample, size, crop) for sample in chunk]


def in_order(samples: Iterator[Sample], work: Callable[[list[Sample]], list[Any]], workers: int,
             ahead: int, chunk: int = 8) -> Iterator[tuple[Sample, Any]]:
    """``(sample, work's answer for it)`` in the samples' order, worked on about ``ahead`` samples in advance.

    ``work`` takes ``chunk`` samples at a time in a pool of ``workers`` threads (fewer
    hand-offs between threads, each one a trip through the GIL, than one task per sample).
    At most ``ahead`` samples are in flight, so memory does not grow with the set.
    """
    samples = iter(samples)
    chunk = max(1, min(chunk, ahead // max(1, workers)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zoo-eval") as pool:
        pending: deque = deque()
        try:
            while True:
                part = list(islice(samples, chunk))
                if part:
                    pending.append((part, pool.submit(work, part)))
                if pending and (not part or len(pending) * chunk >= ahead):
                    done_part, future = pending.popleft()
                    yield from zip(done_part, future.result())
                if not part and not pending:
                    return
        finally:
            for _, future in pending:
                future.cancel()


@dataclass(frozen=True)
class _Broken:
    error: BaseException


class ModelPool:
    """Up to ``size`` one-thread copies of a LiteRT model, made when a worker first needs one
    (a short run never pays for copies it would not use)."""

    def __init__(self, model: Any, size: int):
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        self.model, self.size, self.made = model, size, 0
        self.lock = threading.Lock()
        if getattr(model, "threads", None) == 1:
            self.idle.put(model)
            self.made = 1

    def take(self) -> Any:
        try:
            item = self.idle.get_nowait()
        except queue.Empty:
            with self.lock:
                make = self.made < self.size
                self.made += make
            if make:
                try:
                    return self.model.copy()
                except BaseException as exc:
                    self.idle.put(_Broken(exc))  # wakes whoever waits for that copy: they fail too
                    raise
            item = self.idle.get()
        if isinstance(item, _Broken):
            self.idle.put(item)
            raise item.error
        return item

    def give_back(self, model: Any) -> None:
        self.idle.put(model)


def scored_in_workers(pool: ModelPool, samples: Iterator[Sample], size: tuple[int, int], crop: float,
                      k: int, chunk: int) -> Iterator[tuple[Sample, np.ndarray | _Failure]]:
    """LiteRT: each worker thread reads, decodes, preprocesses and runs a one-thread copy of the
    model on its own images; LiteRT lets go of the GIL while it computes, so N copies keep N
    cores busy with no hand-off between decoding and inference (bench_eval.py)."""

    def work(part: list[Sample]) -> list[np.ndarray | _Failure]:
        prepared = _prepare_chunk(part, size, crop)
        images = [item for item in prepared if not isinstance(item, _Failure)]
        if not images:
            return prepared
        model = pool.take()
        try:
            tops = iter(top_k(model(np.stack(images)), k))
        finally:
            pool.give_back(model)
        return [item if isinstance(item, _Failure) else next(tops) for item in prepared]

    # two chunks per worker in flight (one it works on, one waiting for it), and never more
    # than MAX_IN_FLIGHT images however many threads were asked for
    return in_order(samples, work, workers=pool.size, ahead=min(2 * chunk * pool.size, MAX_IN_FLIGHT), chunk=chunk)


def scored_in_caller(model: Any, samples: Iterator[Sample], size: tuple[int, int], crop: float, k: int,
                     batch_size: int, workers: int) -> Iterator[tuple[Sample, np.ndarray | _Failure]]:
    """TensorFlow: worker threads decode ahead, the model runs whole batches in this thread
    (TensorFlow spreads one batch over its own thread pool)."""
    batch: list[tuple[Sample, np.ndarray]] = []

    def run_batch() -> Iterator[tuple[Sample, np.ndarray]]:
        tops = top_k(model(np.stack([image for _, image in batch])), k)
        yield from zip([sample for sample, _ in batch], tops)
        batch.clear()

    decoded = in_order(samples, lambda part: _prepare_chunk(part, size, crop), workers,
                       ahead=2 * batch_size + 8 * workers)
    for sample, image in decoded:
        if isinstance(image, _Failure):
            if batch:  # the images before it are counted first
                yield from run_batch()
            yield sample, image
            continue
        batch.append((sample, image))
        if len(batch) == batch_size:
            yield from run_batch()
    if batch:
        yield from run_batch()


def usable_cpus() -> int:
    """CPUs this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def label_space(labels: Sequence[str] | None, num_classes: int) -> LabelSpace:
    """The classes a model answers: its own names (a fine-tuned model), else ImageNet's."""
    if labels is not None:
        return LabelSpace.of_classes(labels)
    return LabelSpace.imagenet(num_classes)


def evaluate(model: str | Path | Entry | RestoredModel, data: str | Path, *, format: str | None = None,
             threads: int | None = None, batch_size: int | None = None, limit: int | None = None,
             crop: float = DEFAULT_CROP, split: str = "validation", skip_errors: bool = False,
             workers: int | None = None, catalog: Catalog | None = None, cache_dir: Path | None = None,
             progress: object = None, compare: str | None = None, **restore_options: Any) -> EvalResult:
    """Measure top-1/top-5 of ``model`` on the labelled images at ``data``.

    ``model``: an already restored model, or anything ``zoo.formats.resolve.locate`` accepts
    (a catalog name, a fine-tuned OUT or a file in it, a model folder, a local file);
    ``format`` None: the file's own, else the model's default (``default_format``). ``data``: a folder of ILSVRC synset folders,
    of TF-slim TFRecord shards (``split``), of class-name folders, or a CSV/TSV of
    ``path,label`` rows (``zoo.data.datasets``); a model with its own classes reads class-name
    folders and CSV labels by its class names. ``limit`` takes the first N images in the set's
    stable order. An unreadable image stops the run with its name, unless ``skip_errors``
    counts it and goes on.

    ``threads``: CPU threads for inference (default: all CPUs). A LiteRT model runs as that
    many one-thread copies side by side, each decoding its own images, which gets through
    more images per second than one copy that splits every image over the threads.
    ``workers``: decoding threads for the TensorFlow formats (default: CPUs, at most 4).

    ``compare``: another format of the same model (say ``tflite`` beside the ``ckpt`` of a
    ``_quant`` model, as the seed's eval ``--quantize`` is compared with the uint8 file) run
    on the same images with its own default runtime; the result's ``compared`` holds its
    figures and ``top1_agreement`` how often the two top-1 answers agree.
    """
    from ..formats.base import RestoredModel
    from ..formats.kinds import DEFAULT_RUNTIME
    from ..formats.resolve import locate

    crop = check_crop(crop)
    for name, value in (("batch_size", batch_size), ("limit", limit), ("workers", workers)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}", params=(name,))
    ref = None if isinstance(model, RestoredModel) else locate(model, format, catalog=catalog)
    entry, fmt = (model.entry, model.format) if ref is None else (ref.entry, ref.format)
    other = None if compare is None else compared_ref(model, ref, compare, catalog)
    labels = label_space(entry.labels, entry.num_classes)
    streams = 1
    runtime = restore_options.get("runtime") or DEFAULT_RUNTIME.get(fmt)
    if isinstance(model, RestoredModel):
        runtime = model.runtime
    if runtime != "tensorflow":  # LiteRT, ONNX Runtime, OpenVINO: one-thread copies side by side (see above)
        streams = threads or getattr(model, "threads", None) or usable_cpus()
        threads = 1
        restore_options["streams"] = streams  # OpenVINO compiles once for them all
    if ref is None:
        restored, dataset = model, open_dataset(data, labels, split=split)
    elif ref.is_local and runtime != "tensorflow":  # nothing to fetch: load it while the set is listed
        restored, dataset = _load_while_listing(lambda: ref.load(threads=threads, **restore_options),
                                                lambda: open_dataset(data, labels, split=split))
    else:
        dataset = open_dataset(data, labels, split=split)  # before any download
        refuse_rejected(dataset, skip_errors)
        restored = ref.load(cache_dir=cache_dir, threads=threads, **restore_options)
    if other is not None:
        compared_file(other, cache_dir)  # fetched with the model evaluated
    run = dict(limit=limit, crop=crop, skip_errors=skip_errors, workers=workers or min(4, usable_cpus()),
               progress=progress)
    result = run_evaluation(restored, dataset, batch_size=batch_size or DEFAULT_BATCH.get(restored.format, 1),
                            streams=streams, **run)
    if other is None:
        return result
    other_streams = 1 if DEFAULT_RUNTIME.get(other.format) == "tensorflow" else usable_cpus()
    other_model = other.load(cache_dir=cache_dir, threads=1 if other_streams > 1 else None,
                             **({"streams": other_streams} if other_streams > 1 else {}))
    return with_comparison(result, run_evaluation(other_model, dataset, batch_size=DEFAULT_BATCH.get(other.format, 1),
                                                  streams=other_streams, **run))


def compared_ref(model: Any, ref: Any, fmt: str, catalog: Catalog | None) -> Any:
    """Where ``evaluate(compare=fmt)`` finds the other format of the same model: the catalog
    name or folder itself, the fine-tuned OUT, or for a single file the folder it sits in (an
    unpacked tarball holds the checkpoint beside the .tflite)."""
    from ..formats.kinds import ROLE_OF_FORMAT
    from ..formats.resolve import locate, normalize_format

    fmt = normalize_format(fmt)
    if ref is None:
        raise UsageError("compare needs a model name, folder or file, not an already restored model",
                         params=("compare",))
    if fmt == ref.format:
        raise UsageError(f"{ref.entry.id}: compare={fmt!r} is the format being evaluated",
                         hint="compare with another of its formats: "
                              + ", ".join(f for f in ("tflite", "frozen", "ckpt") if f != fmt), params=("compare",))
    if ref.kind == "file":
        other = locate(Path(ref.path).parent, fmt, catalog=catalog, entry=ref.entry)
    elif ref.kind == "finetuned":  # OUT or a file in it: OUT has the other file
        other = locate(Path(ref.path).parent, fmt, catalog=catalog)
    else:
        other = locate(model, fmt, catalog=catalog)
    if not other.is_local and ROLE_OF_FORMAT[fmt] not in other.entry.files:
        raise RestoreError(f"{other.entry.id}: compare={fmt!r}, but its tarball has no {fmt} file",
                           hint=f"it holds: {', '.join(other.entry.files) or 'nothing the catalog lists'}",
                           params=("compare",))
    if other.is_local:  # before anything is run
        compared_file(other)
    return other


def compared_file(other: Any, cache_dir: Path | None = None) -> Path:
    """The compared format's file, or an error saying where it was looked for (asked for
    before the first run, so a missing file never costs a whole evaluation)."""
    try:
        return other.file(cache_dir)
    except RestoreError as exc:
        raise RestoreError(f"compare={other.format!r}: {exc.message}",
                           hint=f"the {other.format} file must sit beside the model evaluated (as in its "
                                "tarball); or evaluate it on its own", params=("compare",)) from None


def with_comparison(result: EvalResult, other: EvalResult) -> EvalResult:
    """``result`` carrying ``other`` (the same images through another format) and how often
    their top-1 answers agree, over the images both could read."""
    import dataclasses

    theirs = dict(other.top1_by_image)
    shared = [(top1, theirs[source]) for source, top1 in result.top1_by_image if source in theirs]
    agreement = round(100.0 * sum(a == b for a, b in shared) / len(shared), 4) if shared else None
    return dataclasses.replace(result, compared=other, top1_agreement=agreement)


def _report(report: Reporter, task: Task, done: int, total: int | None, correct1: int, skipped: int,
            seconds: float) -> None:
    """The running figures eval's progress shows: top-1 so far, images/s, skipped."""
    task.stats.update(top1=round(100.0 * correct1 / done, 2) if done else 0.0,
                      images_per_s=round(done / seconds, 1) if seconds > 0 else 0.0, skipped=skipped)
    report(task, done, total)


def refuse_rejected(dataset: Dataset, skip_errors: bool) -> None:
    """What the data set holds besides images (a stray file, a fifo, a looping link) stops the run,
    naming each, unless ``skip_errors`` counts them as skipped."""
    rejected = dataset.rejected
    if rejected and not skip_errors:
        shown = "\n  ".join(f"{path}: {why}" for path, why in rejected[:5])
        raise DataError(f"{dataset.describe()}: {len(rejected)} file(s) are not image files:\n  {shown}"
                        + (f"\n  ... and {len(rejected) - 5} more" if len(rejected) > 5 else ""),
                        hint="remove them, or skip_errors=True passes over them (counted as skipped)",
                        params=("skip_errors",))


def _load_while_listing(load: Callable[[], Any], list_set: Callable[[], Dataset]) -> tuple[Any, Dataset]:
    """(load(), list_set()) with the model loading in a thread, since eval's start-up is part of
    its time. A data set error still wins over a model error (as when done in sequence), and is
    raised only once the loader is done: it hides native stderr while it runs."""
    with ThreadPoolExecutor(1, thread_name_prefix="zoo-eval-load") as pool:
        loading = pool.submit(load)
        try:
            dataset = list_set()
        except BaseException:
            wait([loading])
            raise
        return loading.result(), dataset


def run_evaluation(model: Any, dataset: Dataset, *, batch_size: int, limit: int | None, crop: float,
                   skip_errors: bool, workers: int, streams: int = 1,
                   progress: object = None) -> EvalResult:
    """The loop: images through ``model`` (or ``streams`` one-thread copies of it), counting top-1/top-5 hits."""
    entry = model.entry
    size = tuple(model.input_size[:2])
    total = dataset.size if limit is None or dataset.size is None else min(limit, dataset.size)
    samples = iter(dataset) if limit is None else islice(dataset, limit)
    k = min(5, dataset.labels.num_classes)
    done = correct1 = correct5 = 0
    top1s: list[tuple[str, int]] = []
    refuse_rejected(dataset, skip_errors)
    skipped: list[tuple[str, str]] = [(str(path), why) for path, why in dataset.rejected]
    start = last_report = time.perf_counter()
    pool = ModelPool(model, streams) if streams > 1 and hasattr(model, "copy") else None
    if pool is not None:
        scored = scored_in_workers(pool, samples, size, crop, k, chunk=max(batch_size, 4))
    else:
        scored = scored_in_caller(model, samples, size, crop, k, batch_size, workers)

    task = Task(entry.id, "eval", "image")

    with Reporter(progress) as report:
        for sample, outcome in scored:
            if isinstance(outcome, _Failure):
                if not skip_errors:
                    raise DataError(f"cannot decode image {outcome.source}: {outcome.reason}",
                                    hint=f"{done} images were read before it; skip_errors=True "
                                         "counts unreadable images and goes on", params=("skip_errors",))
                skipped.append((outcome.source, outcome.reason))
                continue
            done += 1
            top1s.append((sample.source, int(outcome[0])))
            correct1 += int(outcome[0] == sample.label)
            correct5 += int(sample.label in outcome)
            if time.perf_counter() - last_report >= PROGRESS_EVERY_S:
                last_report = time.perf_counter()
                _report(report, task, done, total, correct1, len(skipped), last_report - start)
        seconds = time.perf_counter() - start
        _report(report, task, done, total, correct1, len(skipped), seconds)
    if done == 0:
        raise DataError(f"no image of {dataset.describe()} could be read ({len(skipped)} skipped)",
                        hint=f"first failure: {skipped[0][0]}: {skipped[0][1]}" if skipped else None)
    return EvalResult(
        id=entry.id, format=model.format, images=done,
        top1=round(100.0 * correct1 / done, 4), top5=round(100.0 * correct5 / done, 4),
        claimed_top1=entry.top1, claimed_top5=entry.top5,
        images_per_s=round(done / seconds, 2) if seconds > 0 else 0.0, skipped=len(skipped),
        data=dataset.describe(), seconds=round(seconds, 3), skipped_images=tuple(skipped),
        notes=tuple(getattr(model, "notes", ()) or ()), copies=pool.made if pool else 1,
        runtime=getattr(model, "runtime", "tensorflow"), top1_by_image=tuple(top1s))
