"""The frozen backbone's features, computed once and kept on disk, and the head's input pipeline.

Head-only training runs the backbone once per image (plus the augmented views) and trains the
head on these features for every epoch: the backbone is never recomputed per epoch. The
features live in a memory-mapped ``.npy`` file, so memory does not grow with the data set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .inputs import ImageFolder, image_dataset


def extract_features(tf: Any, backbone: Any, folder: ImageFolder, size: Sequence[int], batch: int,
                      views: int, directory: Path, name: str, seed: int,
                      int8: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Backbone outputs for every image (plus ``views`` augmented copies), in a memory-mapped file.

    With ``int8`` (the backbone as the int8 file runs it, ``zoo.training.quantized_features``), the
    same images also go through it and its features fill the second half of the rows, with
    the same labels: the head then learns from what both the float and the int8 file see.
    """
    dim = int(backbone.output.shape[-1])
    n = len(folder) * (1 + views)
    copies = 2 if int8 is not None else 1
    feats = np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=np.float32,
                                      shape=(n * copies, dim))
    labels = np.empty(n * copies, np.int32)
    run = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    row = 0
    for view in range(1 + views):
        for images, ys in image_dataset(folder, size, batch=batch, augment=view > 0, seed=seed + view):
            out = run(images).numpy()
            feats[row:row + len(out)] = out
            labels[row:row + len(out)] = ys.numpy()
            if int8 is not None:
                feats[n + row:n + row + len(out)] = int8(images.numpy())
                labels[n + row:n + row + len(out)] = ys.numpy()
            row += len(out)
    feats.flush()
    return feats, labels


def feature_dataset(tf: Any, feats: np.ndarray, labels: np.ndarray, batch: int, shuffle: bool, seed: int,
                     repeat: bool = True) -> Any:
    """Batches of cached features, re-shuffled every pass, read from the memory map per batch."""
    n, dim = feats.shape

    def take(index):
        index = np.sort(index)
        return np.asarray(feats[index]), labels[index]

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
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
