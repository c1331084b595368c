"""Class-name folders of images -> checked file lists -> streaming ``tf.data`` pipelines.

    folder = scan_image_folder(Path("photos"))      # photos/<class>/*.jpg; classes sorted
    train, val = split(folder, 0.2)                  # stratified, reproducible
    ds = image_dataset(train, (128, 128), batch=32, augment=True)

Every file is checked *before* any training starts (decoded whole, in parallel), so a
stray README or a truncated download fails in seconds with its name, not an hour in.
Images stream from disk (only file names are shuffled in memory), so memory stays flat
in the dataset size.

Decoding and preprocessing are `eval`'s (``zoo.data.images``: TF-slim's evaluation
preprocessing, central crop 0.875, bilinear resize without antialiasing, [-1, 1]); training
adds light augmentation there (``preprocess_tf(..., augment_seed=...)``).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..catalog.registry import EVAL_CENTRAL_CROP
from ..data.imagefiles import Scan, check_class_name, list_children, scan_folder
from ..errors import UsageError


def files_digest(files: Sequence[str], tags: Sequence[str] | None = None) -> str:
    """sha256 over each file's path, size and mtime (and its tag, e.g. its class). Content is not
    hashed: that would read every image on every run."""
    import hashlib

    digest = hashlib.sha256()
    for index, path in enumerate(files):
        st = os.stat(path)
        tag = f"\0{tags[index]}" if tags is not None else ""
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}{tag}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageFolder:
    """Checked image files with their class index; ``classes`` sorted by name."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> dict[str, int]:
        per = Counter(self.labels)
        return {name: per.get(i, 0) for i, name in enumerate(self.classes)}

    def subset(self, indices: Sequence[int]) -> "ImageFolder":
        return ImageFolder(self.root, self.classes, tuple(self.files[i] for i in indices),
                           tuple(self.labels[i] for i in indices))

    def fingerprint(self) -> dict[str, Any]:
        """What this data set is, for deciding whether saved work still applies (``files_digest``)."""
        return {"root": str(self.root), "images": len(self),
                "sha256": files_digest(self.files, [self.classes[label] for label in self.labels])}

    def shard(self, index: int, count: int) -> "ImageFolder":
        """Every ``count``-th file starting at ``index``: one worker's share."""
        return self.subset(range(index, len(self.files), count))


def scan_image_folder(root: Path, *, classes: Sequence[str] | None = None, param: str = "data",
                      check: str = "decode") -> ImageFolder:
    """Read ``root/<class>/<image>`` and refuse anything a training run would trip over.

    ``classes``: the class list the folder must have (a validation set must match the
    training set's). Files and folders follow ``zoo.data.imagefiles``' rules (hidden ones
    ignored; anything else that is not an image file is an error naming it); class names must
    round-trip through labels.txt and finetune.json. ``check="decode"`` decodes every image
    fully, in parallel, before anything trains, so a truncated file fails now, by name, not an
    epoch in; ``"files"`` checks only the files themselves.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{param}={root}: no such directory",
                         hint="pass a folder with one sub-folder of images per class: DIR/<class>/*.jpg",
                         params=(param,))
    class_dirs = [root / name for name, is_dir in list_children(root) if is_dir]
    names = tuple(check_class_name(p.name, p) for p in class_dirs)
    if classes is None:
        if len(class_dirs) < 2:
            found = f"only one class folder ({names[0]!r})" if names else "no class folders"
            raise UsageError(f"{param}={root} has {found}; a classifier needs at least two classes",
                             hint="lay images out as DIR/<class>/*.jpg with one folder per class", params=(param,))
    elif names != tuple(classes):
        missing = sorted(set(classes) - set(names))
        extra = sorted(set(names) - set(classes))
        raise UsageError(f"{param}={root} does not have the training classes"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; not in training: {', '.join(extra)}" if extra else ""),
                         hint="validation folders must be named exactly like the training ones", params=(param,))
    files: list[str] = []
    labels: list[int] = []
    bad = Scan()
    for index, folder in enumerate(class_dirs):
        found = scan_folder(folder, recursive=True)
        if not found.images and not found.rejected:
            raise UsageError(f"class folder {folder} is empty",
                             hint="put images in it or remove it (every class needs examples)")
        bad.rejected += found.rejected
        files.extend(str(p) for p in found.images)
        labels.extend([index] * len(found.images))
    if check == "decode" and not bad.rejected:
        bad.rejected += undecodable(files)
    if bad.rejected:
        raise UsageError(f"{param}={root}: {len(bad.rejected)} file(s) are not readable images:"
                         f"{bad.describe_rejected()}",
                         hint="remove or convert them; nothing was trained or written", params=(param,))
    return ImageFolder(root, names, tuple(files), tuple(labels))


def undecodable(files: Sequence[str], workers: int | None = None) -> list[tuple[Path, str]]:
    """(file, why) for each file that does not decode fully, checked in parallel threads."""
    from concurrent.futures import ThreadPoolExecutor

    from ..data.images import decode_failure, decode_file

    def problem(path: str) -> tuple[Path, str] | None:
        try:
            decode_file(path)
        except Exception as exc:  # noqa: BLE001 - decode_failure sorts data problems from bugs
            reason = decode_failure(exc)
            if reason is None:
                raise
            return Path(path), reason
        return None

    threads = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zoo-check") as pool:
        return [found for found in pool.map(problem, files, chunksize=16) if found is not None]


def split(folder: ImageFolder, fraction: float, seed: int = 0) -> tuple[ImageFolder, ImageFolder]:
    """(train, validation): ``fraction`` of each class held out, the same files every run."""
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"val_split must be a fraction between 0 and 1, got {fraction}", params=("val_split",))
    rng = random.Random(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in range(len(folder.classes)):
        members = [i for i, lab in enumerate(folder.labels) if lab == label]
        rng.shuffle(members)
        n_val = int(round(len(members) * fraction))
        if len(members) < 2 or n_val < 1 or n_val >= len(members):
            raise UsageError(f"class {folder.classes[label]!r} has {len(members)} image(s): too few to hold "
                             f"{fraction:.0%} out for validation",
                             hint="add images, change val_split, or pass val_data (a folder)",
                             params=("val_split", "val_data"))
        val_idx.extend(members[:n_val])
        train_idx.extend(members[n_val:])
    return folder.subset(sorted(train_idx)), folder.subset(sorted(val_idx))


# ----------------------------------------------------------------------------- tf.data
def image_dataset(folder: ImageFolder, size: Sequence[int], *, batch: int, augment: bool = False,
                  shuffle: bool = False, repeat: bool = False, seed: int = 0, first: int = 0,
                  crop: float = EVAL_CENTRAL_CROP) -> Any:
    """Batches of (images, labels) streamed from disk; only file names live in memory. Decoding and
    preprocessing are `eval`'s (``zoo.data.images``), so training sees the pixels eval sees.

    Every call with the same arguments yields the same batches: ``shuffle`` draws one order from
    ``seed``, and image ``i``'s augmented view is a function of ``(seed, i)`` alone. A training
    epoch builds its own dataset with its own seed, so it can be re-run exactly after a restart
    (``zoo.training.resume``). ``first``: start at file ``first`` (a restarted feature pass), with
    the same views those files would have had."""
    from ..data.images import decode_file_tf, preprocess_tf
    from ..formats.keras_models import import_tensorflow

    tf = import_tensorflow()
    index = list(range(first, len(folder.files)))
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(folder.files[first:]), tf.string),
                                             tf.constant(list(folder.labels[first:]), tf.int32),
                                             tf.constant(index, tf.int64)))
    if shuffle:
        ds = ds.shuffle(max(1, len(index)), seed=seed, reshuffle_each_iteration=False)
    if repeat:
        ds = ds.repeat()

    def load(path, label, i):
        view_seed = tf.stack([tf.constant(seed, tf.int64), i]) if augment else None
        return preprocess_tf(tf, decode_file_tf(tf, path), size, crop, augment_seed=view_seed), label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # workers shard by file list themselves (ImageFolder.shard); tf.distribute must not re-shard
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)
