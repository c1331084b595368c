"""The training loop every phase of `finetune` runs, and the record of what it achieved.

    history = History(model)
    train_epochs(tf, keras, dist, model, lambda seed: dataset(seed), val_ds, phase="head", epochs=5,
                 steps=40, val_steps=None, learning_rate=1e-3, seed=0, history=history,
                 report=Reporter(progress))
    history.best_weights, history.records

A plain ``strategy.run`` loop rather than ``Model.fit``: Keras 3's ``fit`` cannot start under
``MultiWorkerMirroredStrategy`` (its first-batch build reduces a tuple of per-replica values,
which the collective reducer rejects). One loop serves every strategy, so what the tests run
on one device is what runs on a cluster. The library prints nothing: each step and each epoch
goes to ``report`` (``zoo._util.progress``'s contract: task ``"<phase> epoch i/n"`` in steps, with
loss and accuracy, and at the epoch's end its validation figures and ``finished``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._util.progress import Task


@dataclass
class History:
    """Every epoch's figures, and the best weights so far (by validation top-1): what is exported,
    and what Ctrl-C keeps."""

    model: Any
    records: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    best_weights: list[Any] | None = None
    best_epoch: int = 0

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        score = record["val_accuracy"] if record["val_accuracy"] is not None else -record["loss"]
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.best_weights = self.model.get_weights()
            self.best_epoch = len(self.records)

    def restart_scoring(self) -> None:
        """From here on scores are not comparable with the earlier ones (a new phase's measure)."""
        self.best_score = None

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: its shuffle, its augmented views and its dropout masks."""
    return (seed * 1_000_003 + epoch) % 2**31


def reseed_dropout(model: Any, seed: int) -> None:
    """Set every random layer's generator to ``seed``: an epoch's dropout masks then depend on the
    epoch alone, not on how many epochs this process has run (a resumed run draws the same)."""
    for layer in model._flatten_layers(include_self=False):
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            generator.state.assign(np.array([seed, 0], dtype=generator.state.dtype))


def train_epochs(tf: Any, keras: Any, dist: Any, model: Any, train_data: Callable[[int], Any], val_ds: Any, *,
                 phase: str, model_id: str, epochs: int, steps: int, val_steps: int | None, learning_rate: float,
                 seed: int, history: History, report: Callable[[Task, int, int | None], None],
                 start_epoch: int = 0, optimizer_state: list[np.ndarray] | None = None,
                 on_epoch_end: Callable[[int, list[np.ndarray]], None] | None = None) -> None:
    """Train ``model`` for ``epochs`` x ``steps`` batches with ``dist``; every epoch goes to ``history``.

    ``train_data(seed)``: a repeating dataset of that epoch's training batches (each epoch builds
    its own from ``epoch_seed(seed, epoch)``, so any epoch can be re-run on its own).
    ``val_steps`` None: run the validation set once to its end (one replica only).
    ``start_epoch`` and ``optimizer_state``: carry on from a saved point (``zoo.training.resume``);
    ``on_epoch_end(epochs_done, optimizer_state)`` is called after each epoch is recorded.
    """
    variables = model.trainable_variables
    with dist.scope():
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build(variables)  # slots now, not lazily inside a replica's tf.function (mirrored fails)
    if optimizer_state is not None:
        if len(optimizer_state) != len(optimizer.variables) or any(
                tuple(a.shape) != tuple(v.shape) for a, v in zip(optimizer_state, optimizer.variables)):
            raise ValueError("the saved optimizer state does not fit this model")
        for variable, value in zip(optimizer.variables, optimizer_state):
            variable.assign(value)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)

    def sums(y, probs):
        per_example = loss_fn(y, probs)
        hits = tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), tf.cast(y, tf.int32)), tf.float32)
        return per_example, tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(hits),
                                      tf.cast(tf.shape(y)[0], tf.float32)])

    def train_replica(x, y):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_example, totals = sums(y, probs)
            loss = tf.nn.compute_average_loss(per_example)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return totals

    def eval_replica(x, y):
        return sums(y, model(x, training=False))[1]

    @tf.function
    def train_step(iterator):
        return dist.reduce("SUM", dist.run(train_replica, args=next(iterator)), axis=None)

    @tf.function
    def eval_step(batch):
        return dist.reduce("SUM", dist.run(eval_replica, args=batch), axis=None)

    for epoch in range(start_epoch, epochs):
        start = time.perf_counter()
        this_seed = epoch_seed(seed, epoch)
        reseed_dropout(model, this_seed)
        train_iter = iter(dist.experimental_distribute_dataset(train_data(this_seed)))
        task = Task(model_id, f"{phase} epoch {epoch + 1}/{epochs}", "step")
        totals = np.zeros(3)
        for step in range(steps):
            totals += train_step(train_iter).numpy()
            task.stats.update(loss=float(totals[0] / max(totals[2], 1)), accuracy=float(totals[1] / max(totals[2], 1)))
            report(task, step + 1, steps)
        val = np.zeros(3)
        val_iter = iter(dist.experimental_distribute_dataset(val_ds))
        for _ in (range(val_steps) if val_steps is not None else iter(int, 1)):
            batch = next(val_iter, None)
            if batch is None:
                break
            val += eval_step(batch).numpy()
        seconds = time.perf_counter() - start
        record = {"phase": phase, "epoch": epoch + 1, "loss": float(totals[0] / max(totals[2], 1)),
                  "accuracy": float(totals[1] / max(totals[2], 1)),
                  "val_accuracy": float(val[1] / val[2]) if val[2] else None,
                  "val_loss": float(val[0] / val[2]) if val[2] else None, "seconds": round(seconds, 3),
                  "images_per_s": round(totals[2] / max(seconds, 1e-9), 1)}
        history.add(record)
        if on_epoch_end is not None:  # before the epoch is reported: a reported epoch is a kept one
            on_epoch_end(epoch + 1, [np.asarray(v.numpy()) for v in optimizer.variables])
        task.stats.update(val_accuracy=record["val_accuracy"], seconds=record["seconds"],
                          images_per_s=record["images_per_s"], finished=True)
        report(task, steps, steps)
