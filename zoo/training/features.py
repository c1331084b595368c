"""The frozen backbone's features, computed once and kept on disk, and the head's input pipeline.

Head-only training runs the backbone once per image (plus the augmented views) and trains the
head on these features for every epoch: the backbone is never recomputed per epoch. The
features live in a memory-mapped ``.npy`` file, so memory does not grow with the data set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .inputs import ImageFolder, image_dataset

MARK_EVERY_S = 1.0  # how often a feature pass records the rows it has on disk


@dataclass
class FeaturePass:
    """One pass of the frozen backbone over a data set, and how much of it this process ran."""

    feats: np.ndarray          # [rows, features], memory-mapped
    labels: np.ndarray         # [rows]
    computed: int              # images this process sent through the backbone (0: all were on disk)
    resumed_at: int            # the row an interrupted pass carried on from (0: from the start)


def extract_features(tf: Any, backbone: Any, folder: ImageFolder, size: Sequence[int], batch: int,
                     views: int, directory: Path, name: str, seed: int,
                     int8: Callable[[np.ndarray], np.ndarray] | None = None,
                     features: Callable[[Any], np.ndarray] | None = None) -> FeaturePass:
    """Backbone outputs for every image (plus ``views`` augmented copies), in a memory-mapped file.

    With ``int8`` (the backbone as the int8 file runs it, ``zoo.training.quantized_features``), the
    same images also go through it and its features fill the second half of the rows, with
    the same labels: the head then learns from what both the float and the int8 file see.

    ``features``: what computes the float rows from a batch of images (``zoo.training.runtime_backbone``'s
    checked LiteRT copy); default the Keras ``backbone`` itself.

    Resumable: ``<name>.rows.json`` records how many rows are on disk (batch-aligned, written
    after the rows themselves), so a pass killed half-way carries on from there. Image ``i`` of
    view ``v`` is always the same pixels (``image_dataset``'s stateless views), so a resumed pass
    fills the file exactly as an uninterrupted one.
    """
    from .._util.atomic import atomic_write_json, read_json
    from .._util.safepath import is_plain_file

    dim = int(backbone.output.shape[-1])
    per_view = len(folder)
    n = per_view * (1 + views)
    copies = 2 if int8 is not None else 1
    shape = (n * copies, dim)
    path, marker = directory / f"{name}.npy", directory / f"{name}.rows.json"
    done = read_json(marker, 4096)
    rows = done.get("rows") if isinstance(done, dict) and done.get("shape") == list(shape) else None
    feats = None
    if isinstance(rows, int) and not isinstance(rows, bool) and 0 <= rows <= n and is_plain_file(path):
        try:
            np.lib.format.open_memmap(path, mode="r")  # refuses a file shorter than its header says;
            feats = np.lib.format.open_memmap(path, mode="r+")  # r+ would silently extend it with zeros
        except (OSError, ValueError):
            feats = None
        if feats is not None and (feats.shape != shape or feats.dtype != np.float32):
            feats = None
    if feats is None:
        marker.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        feats = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        rows = 0
    resumed_at = row = rows
    labels = np.tile(np.asarray(folder.labels, np.int32), (1 + views) * copies)
    features = features or keras_features(tf, backbone)
    computed, saved_at = 0, time.monotonic()
    while row < n:
        view, first = divmod(row, per_view)
        for images, _ in image_dataset(folder, size, batch=batch, augment=view > 0, seed=seed + view, first=first):
            out = features(images)
            feats[row:row + len(out)] = out
            if int8 is not None:
                feats[n + row:n + row + len(out)] = int8(images.numpy())
            row += len(out)
            computed += len(out)
            if time.monotonic() - saved_at > MARK_EVERY_S:
                feats.flush()
                atomic_write_json(marker, {"rows": row, "shape": list(shape)}, mode=0o600)
                saved_at = time.monotonic()
    feats.flush()
    atomic_write_json(marker, {"rows": n, "shape": list(shape)}, mode=0o600)
    return FeaturePass(feats, labels, computed, resumed_at)


def keras_features(tf: Any, backbone: Any) -> Callable[[Any], np.ndarray]:
    """The Keras backbone as one traced function of a batch (inference mode): images -> features."""
    run = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    return lambda images: run(images).numpy()


def feature_dataset(tf: Any, feats: np.ndarray, labels: np.ndarray, batch: int, shuffle: bool, seed: int,
                    repeat: bool = True) -> Any:
    """Batches of cached features in the order ``seed`` draws (one epoch's), read from the memory
    map per batch; ``repeat`` cycles that order, for loops that run a fixed number of steps."""
    n, dim = feats.shape

    def take(index):
        index = np.sort(index)
        return np.asarray(feats[index]), labels[index]

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=False)
    ds = (ds.repeat() if repeat else ds).batch(batch)

    def load(index):
        x, y = tf.numpy_function(take, [index], [tf.float32, tf.int32])
        x.set_shape([None, dim])
        y.set_shape([None])
        return x, y

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.map(load).prefetch(tf.data.AUTOTUNE).with_options(options)


def steps_for(n: int, batch: int) -> int:
    return max(1, -(-n // batch))
