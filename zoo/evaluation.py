"""Top-1/top-5 of a model on a labelled image set, measured the way TF-slim's eval does.

    result = zoo.evaluate("v1_0.25_128_quant", "imagenet/val", limit=1000)
    result.top1, result.claimed_top1, result.to_json()

The model is found with the same resolver `classify` uses (``formats.base.locate`` /
``restore_any``): catalog names (fetched if needed), local upstream files, and whatever
that resolver learns to accept later. The data set is opened and its labels checked
before the model is restored, so a typo fails before a download.

Speed: decoding and preprocessing (``zoo.images``: TF-slim's central crop and bilinear
resize) run in a pool of worker threads ahead of the model, which runs in the calling
thread; Pillow and numpy release the GIL for the heavy parts, so decoding overlaps
inference. At most a few batches are in flight: memory stays flat however large the set.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .catalog import Catalog, Entry
from .datasets import Dataset, LabelSpace, Sample, open_dataset
from .errors import DataError, UsageError
from .images import DEFAULT_CROP, check_crop, decode_pixels, preprocess_array

JSON_KEYS = ("id", "format", "images", "top1", "top5", "claimed_top1", "claimed_top5", "images_per_s",
             "skipped")
# Batches that pay off per runtime: one graph/session call per batch for TensorFlow;
# LiteRT's upstream files have a fixed batch of 1 and gain nothing from resizing (bench_eval.py).
DEFAULT_BATCH = {"tflite": 1, "frozen": 32, "ckpt": 32}


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

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: exactly the documented keys."""
        return {key: getattr(self, key) for key in JSON_KEYS}

    def margin(self, which: str = "top1") -> float:
        """Half-width (percentage points) of a 95% Wilson interval for a rate measured on ``images``
        (never 0, unlike the normal approximation, at 0% or 100%)."""
        if not self.images:
            return float("nan")
        p, n, z = getattr(self, which) / 100.0, self.images, 1.96
        return 100.0 * z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


@dataclass(frozen=True)
class Progress:
    """Handed to the ``progress`` callback after every batch."""

    done: int
    total: int | None
    correct1: int
    skipped: int
    seconds: float

    @property
    def top1(self) -> float:
        return 100.0 * self.correct1 / self.done if self.done else 0.0

    @property
    def images_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Failure:
    source: str
    reason: str


def _prepare(sample: Sample, size: tuple[int, int], crop: float) -> np.ndarray | _Failure:
    """Read, decode and preprocess one image in a worker thread; failures come back as values."""
    from PIL import Image

    try:
        return preprocess_array(decode_pixels(sample.read_bytes()), size, crop)
    except FileNotFoundError:
        return _Failure(sample.source, "file not found")
    except Image.DecompressionBombError:
        return _Failure(sample.source, "too large to decode safely")
    except Image.UnidentifiedImageError:
        return _Failure(sample.source, "not an image Pillow can read")
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data, unreadable file
        return _Failure(sample.source, str(exc) or type(exc).__name__)


def _prepare_chunk(chunk: list[Sample], size: tuple[int, int], crop: float) -> list[np.ndarray | _Failure]:
    return [_prepare(sample, size, crop) for sample in chunk]


def prepared(samples: Iterator[Sample], size: tuple[int, int], crop: float, workers: int,
             ahead: int, chunk: int = 8) -> Iterator[tuple[Sample, np.ndarray | _Failure]]:
    """``(sample, image or failure)`` in the samples' order, decoded about ``ahead`` images in advance.

    Workers take ``chunk`` images at a time: fewer hand-offs between threads (each one a
    trip through the GIL) than one task per image.
    """
    samples = iter(samples)
    chunk = max(1, min(chunk, ahead // max(1, workers)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval-decode") as pool:
        pending: deque = deque()
        try:
            while True:
                part = list(islice(samples, chunk))
                if part:
                    pending.append((part, pool.submit(_prepare_chunk, part, size, crop)))
                if pending and (not part or len(pending) * chunk >= ahead):
                    done_part, future = pending.popleft()
                    yield from zip(done_part, future.result())
                if not part and not pending:
                    return
        finally:
            for _, future in pending:
                future.cancel()


def label_space(entry: Entry, model: Any = None) -> LabelSpace:
    """The classes of a model: its own names when it has them, else ImageNet's."""
    names = getattr(model, "class_names", None) or getattr(entry, "class_names", None)
    if names:
        return LabelSpace.of_classes(names)
    return LabelSpace.imagenet(entry.num_classes)


def evaluate(model: str | Path | Entry, data: str | Path, *, format: str = "tflite", threads: int | None = None,
             batch_size: int | None = None, limit: int | None = None, crop: float = DEFAULT_CROP,
             split: str = "validation", skip_errors: bool = False, workers: int | None = None,
             catalog: Catalog | None = None, cache_dir: Path | None = None,
             progress: Callable[[Progress], None] | None = None, **restore_options: Any) -> EvalResult:
    """Measure top-1/top-5 of ``model`` on the labelled images at ``data``.

    ``model``: anything `classify` accepts, or an already restored model. ``data``: a folder of
    ILSVRC synset folders, of TF-slim TFRecord shards (``split``), of class-name folders, or a
    CSV/TSV of ``path,label`` rows (``zoo.datasets``). ``limit`` takes the first N images in
    the set's stable order. An unreadable image stops the run with its name, unless
    ``skip_errors`` counts it and goes on. ``workers``: decoding threads (default: CPUs, at most 4).
    """
    from .formats.base import RestoredModel, locate, restore_any, restore_file

    crop = check_crop(crop)
    for name, value in (("batch_size", batch_size), ("limit", limit), ("workers", workers)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}", params=(name,))
    if catalog is None and not isinstance(model, (RestoredModel, Entry)):
        from .catalog import load_catalog

        catalog = load_catalog()
    path = None
    if isinstance(model, RestoredModel):
        entry, fmt = model.entry, model.format
    else:
        entry, path, fmt = locate(model, format, catalog)
    if path is not None and fmt == "tflite":  # a local file, nothing to fetch: load it while the set is listed
        restored, dataset = _load_while_listing(lambda: restore_file(entry, path, fmt, threads=threads,
                                                                     **restore_options),
                                                lambda: open_dataset(data, label_space(entry), split=split))
    else:
        dataset = open_dataset(data, label_space(entry), split=split)  # before any download
        if isinstance(model, RestoredModel):
            restored = model
        elif path is not None:
            restored = restore_file(entry, path, fmt, threads=threads, **restore_options)
        else:
            restored = restore_any(model, fmt, catalog=catalog, cache_dir=cache_dir, threads=threads,
                                   **restore_options)
    if label_space(entry, restored) != dataset.labels:  # the restored model has its own classes
        dataset = open_dataset(data, label_space(entry, restored), split=split)
    return run_evaluation(restored, dataset, batch_size=batch_size or DEFAULT_BATCH.get(restored.format, 1),
                          limit=limit, crop=crop, skip_errors=skip_errors,
                          workers=workers or min(4, os.cpu_count() or 1), progress=progress)


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
                   skip_errors: bool, workers: int,
                   progress: Callable[[Progress], None] | None = None) -> EvalResult:
    """The loop: prepared images in batches through ``model``, counting top-1/top-5 hits."""
    entry = model.entry
    size = tuple(model.input_size[:2])
    total = dataset.size if limit is None or dataset.size is None else min(limit, dataset.size)
    samples = iter(dataset) if limit is None else islice(dataset, limit)
    k = min(5, dataset.labels.num_classes)
    done = correct1 = correct5 = 0
    skipped: list[tuple[str, str]] = []
    batch: list[np.ndarray] = []
    labels: list[int] = []
    start = time.perf_counter()

    def run_batch() -> None:
        nonlocal done, correct1, correct5
        probs = model(np.stack(batch))
        truth = np.asarray(labels)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # ties: lower index first
        correct1 += int(np.sum(top[:, 0] == truth))
        correct5 += int(np.sum(np.any(top == truth[:, None], axis=1)))
        done += len(batch)
        batch.clear()
        labels.clear()
        if progress is not None:
            progress(Progress(done, total, correct1, len(skipped), time.perf_counter() - start))

    for sample, image in prepared(samples, size, crop, workers, ahead=2 * batch_size + 8 * workers):
        if isinstance(image, _Failure):
            if not skip_errors:
                raise DataError(f"cannot decode image {image.source}: {image.reason}",
                                hint=f"{done + len(batch)} images were read before it; skip_errors=True "
                                     "counts unreadable images and goes on", params=("skip_errors",))
            skipped.append((image.source, image.reason))
            continue
        batch.append(image)
        labels.append(sample.label)
        if len(batch) == batch_size:
            run_batch()
    if batch:
        run_batch()
    seconds = time.perf_counter() - start
    if done == 0:
        raise DataError(f"no image of {dataset.describe()} could be read ({len(skipped)} skipped)",
                        hint=f"first failure: {skipped[0][0]}: {skipped[0][1]}" if skipped else None)
    return EvalResult(
        id=entry.id, format=model.format, images=done,
        top1=round(100.0 * correct1 / done, 4), top5=round(100.0 * correct5 / done, 4),
        claimed_top1=entry.top1, claimed_top5=entry.top5,
        images_per_s=round(done / seconds, 2) if seconds > 0 else 0.0, skipped=len(skipped),
        data=dataset.describe(), seconds=round(seconds, 3), skipped_images=tuple(skipped),
        notes=tuple(getattr(model, "notes", ()) or ()))
