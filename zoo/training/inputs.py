"""Class-name folders of images -> checked file lists -> streaming ``tf.data`` pipelines.

    folder = scan_image_folder(Path("photos"))      # photos/<class>/*.jpg; classes sorted
    train, val = split(folder, 0.2)                  # stratified, reproducible
    ds = image_dataset(train, (128, 128), batch=32, augment=True)

Every file is checked *before* any training starts (Pillow reads only the header), so a
stray README or a truncated download fails in seconds with its name, not an hour in.
Images stream from disk (only file names are shuffled in memory), so memory stays flat
in the dataset size.

Preprocessing is the base model's, TF-slim's evaluation preprocessing: central crop
0.875, bilinear resize without antialiasing, ``x / 127.5 - 1``. Augmentation (training
only, light on purpose) replaces the central crop by a random crop of 75-100% of each
side and jitters brightness and contrast a little. No horizontal flip: it is wrong for
text, digits and anything with a handedness, and the user's classes are unknown.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..catalog.registry import EVAL_CENTRAL_CROP
from ..errors import MissingDependencyError, UsageError

# What tf.io.decode_image reads (and Pillow identifies the same way).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_PIL_FORMATS = {"JPEG", "PNG", "BMP", "GIF", "MPO"}
AUGMENT_CROP = (0.75, 1.0)


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

    def shard(self, index: int, count: int) -> "ImageFolder":
        """Every ``count``-th file starting at ``index``: one worker's share."""
        return self.subset(range(index, len(self.files), count))


def _is_hidden(path: Path | str) -> bool:
    return (path if isinstance(path, str) else path.name).startswith(".")


def scan_image_folder(root: Path, *, classes: Sequence[str] | None = None, param: str = "data",
                      check_headers: bool = True) -> ImageFolder:
    """Read ``root/<class>/<image>`` and refuse anything a training run would trip over.

    ``classes``: the class list the folder must have (a validation set must match the
    training set's). Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are
    ignored; any other file that is not a readable JPEG/PNG/BMP/GIF is an error naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{param}={root}: no such directory",
                         hint="pass a folder with one sub-folder of images per class: DIR/<class>/*.jpg",
                         params=(param,))
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and not _is_hidden(p)), key=lambda p: p.name)
    names = tuple(p.name for p in class_dirs)
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
    bad: list[str] = []
    for index, folder in enumerate(class_dirs):
        members = sorted(p for p in folder.rglob("*") if p.is_file()
                         and not any(_is_hidden(part) for part in p.relative_to(folder).parts))
        images = []
        for path in members:
            if path.suffix.lower() not in IMAGE_SUFFIXES or (check_headers and not _readable(path)):
                bad.append(str(path))
            else:
                images.append(str(path))
        if not images and not bad:
            raise UsageError(f"class folder {folder} is empty",
                             hint="put images in it or remove it (every class needs examples)")
        files.extend(images)
        labels.extend([index] * len(images))
    if bad:
        shown = "\n  ".join(bad[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UsageError(f"{param}={root}: {len(bad)} file(s) are not readable images "
                         f"({', '.join(IMAGE_SUFFIXES)}):\n  {shown}",
                         hint="remove or convert them; nothing was trained or written", params=(param,))
    return ImageFolder(root, names, tuple(files), tuple(labels))


def _readable(path: Path) -> bool:
    """True if Pillow recognises the header as a format TensorFlow can decode."""
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError("pillow", "reading training images") from None
    try:
        with Image.open(path) as img:
            return img.format in _PIL_FORMATS
    except Exception:  # noqa: BLE001 - any failure to identify means "not an image"
        return False


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
                             hint="add images, change --val-split, or pass --val-data DIR")
        val_idx.extend(members[:n_val])
        train_idx.extend(members[n_val:])
    return folder.subset(sorted(train_idx)), folder.subset(sorted(val_idx))


# ----------------------------------------------------------------------------- tf.data
def decode_and_preprocess(tf: Any, path: Any, size: Sequence[int], *, crop: float = EVAL_CENTRAL_CROP,
                          augment: bool = False) -> Any:
    """One file name tensor -> float32 [H, W, 3] in [-1, 1] (TF-slim eval preprocessing)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
    if augment:
        shape = tf.shape(image)
        fraction = tf.random.uniform([], AUGMENT_CROP[0], AUGMENT_CROP[1])
        h = tf.maximum(1, tf.cast(tf.cast(shape[0], tf.float32) * fraction, tf.int32))
        w = tf.maximum(1, tf.cast(tf.cast(shape[1], tf.float32) * fraction, tf.int32))
        image = tf.image.random_crop(image, tf.stack([h, w, 3]))
    elif crop < 1.0:
        image = tf.image.central_crop(image, crop)
    image = tf.image.resize(image, [int(size[0]), int(size[1])], method="bilinear", antialias=False)
    if augment:
        image = tf.image.random_brightness(image, 0.08)
        image = tf.image.random_contrast(image, 0.9, 1.1)
        image = tf.clip_by_value(image, 0.0, 1.0)
    return image * 2.0 - 1.0  # == x / 127.5 - 1 for x in [0, 255]


def image_dataset(folder: ImageFolder, size: Sequence[int], *, batch: int, augment: bool = False,
                  shuffle: bool = False, repeat: bool = False, seed: int = 0,
                  crop: float = EVAL_CENTRAL_CROP) -> Any:
    """Batches of (images, labels) streamed from disk; only file names live in memory."""
    from ..formats.keras_models import import_tensorflow

    tf = import_tensorflow()
    ds = tf.data.Dataset.from_tensor_slices((list(folder.files), list(folder.labels)))
    if shuffle:
        ds = ds.shuffle(len(folder.files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(lambda p, y: (decode_and_preprocess(tf, p, size, crop=crop, augment=augment), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # workers shard by file list themselves (ImageFolder.shard); tf.distribute must not re-shard
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)
