"""Top-k ImageNet predictions for photos, with any model and format.

Images are decoded and checked before the model is restored, so a typo in a file
name fails in a second instead of after a download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union, cast

import numpy as np

from ..catalog.registry import Catalog, Entry
from ..data.imagefiles import IMAGE_SUFFIXES, scan_folder
from ..errors import DataError, UsageError
from ..data.images import DEFAULT_CROP, check_crop, is_pil_image, prepare_image
from ..formats.base import RestoredModel
from ..formats.resolve import locate

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: What `classify` takes as one image: a file, a Pillow image, or RGB pixels [H, W, 3]
#: (uint8 0-255, or float in [0, 1]); a [N, H, W, 3] array is N images.
ImageInput = Union[str, Path, "PILImage", np.ndarray]


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int   # ImageNet class index, 0 = background
    score: float  # probability

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "score": self.score}


@dataclass(frozen=True)
class Classification:
    """One image's answer: its best classes, or (with ``skip_errors``) why it could not be read.

    ``image`` names the input: the path as given, the Pillow image's file name, or
    ``array[i]`` / ``image[i]`` for the i-th in-memory image.
    """

    image: str
    predictions: tuple[Prediction, ...] = ()
    error: str | None = None

    @property
    def best(self) -> Prediction | None:
        return self.predictions[0] if self.predictions else None

    def to_json(self) -> dict[str, Any]:
        """The `classify --json` record: ``{"image", "predictions"}`` or ``{"image", "error"}``."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "predictions": [p.to_json() for p in self.predictions]}


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Class indices of the ``k`` best classes per row of ``probs`` [N, classes], best first;
    ties go to the lower index (what `classify` shows and `eval` counts)."""
    return np.argsort(-np.asarray(probs), axis=-1, kind="stable")[..., :k]


def predictions(probs: np.ndarray, k: int, labels: Sequence[str]) -> tuple[Prediction, ...]:
    """The k best classes of one probability vector, named with the model's ``labels``."""
    return tuple(Prediction(labels[int(i)], int(i), float(probs[i])) for i in top_k(probs, k))


def expand_image_paths(paths: Sequence[str | Path], *, skip_errors: bool = False) -> list[Path]:
    """Files as given; a directory becomes the image files directly inside it, sorted by name
    (``zoo.data.imagefiles``' rules). Anything else in a directory (a stray file, a fifo) is an
    error naming it; with ``skip_errors`` it stays in the list, to be reported as unreadable."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            out.append(path)
            continue
        found = scan_folder(path)
        if found.rejected and not skip_errors:
            raise DataError(f"{path}: {len(found.rejected)} file(s) are not image files:{found.describe_rejected()}",
                            hint="remove them, or skip_errors=True reports them and goes on",
                            params=("skip_errors",))
        if not found.images and not found.rejected:
            raise DataError(f"no image files in {path}",
                            hint=f"looked for {', '.join(IMAGE_SUFFIXES)} directly inside it")
        out.extend(sorted(found.images + [p for p, _ in found.rejected]))
    return out


def named_images(images: ImageInput | Sequence[ImageInput]) -> list[tuple[str, Any]]:
    """One (name, image) per image: a single image, a sequence of them, or an [N, H, W, 3] batch."""
    if isinstance(images, (str, Path)) or is_pil_image(images):
        items: list[Any] = [images]
    elif isinstance(images, np.ndarray):
        items = list(images) if images.ndim == 4 else [images]
    else:
        items = list(cast(Sequence[Any], images))
    named = []
    for i, item in enumerate(items):
        if isinstance(item, (str, Path)):
            named.append((str(item), item))
        elif is_pil_image(item):
            named.append((getattr(item, "filename", "") or f"image[{i}]", item))
        else:
            named.append((f"array[{i}]", item))
    return named


def classify(model: str | Path | Entry | RestoredModel, images: ImageInput | Sequence[ImageInput], top: int = 5,
             format: str | None = None, crop: float = DEFAULT_CROP, catalog: Catalog | None = None,
             cache_dir: Path | None = None, threads: int | None = None,
             skip_errors: bool = False, runtime: str | None = None, openvino_device: str | None = None,
             precision: str | None = None) -> list[Classification]:
    """Classify ``images`` and return one :class:`Classification` per image, in order.

    ``model``: an already restored model, or anything ``zoo.formats.resolve.locate`` accepts
    (a catalog name, an Entry, a fine-tuned OUT, a model folder, a local .tflite / .pb /
    checkpoint); ``format`` None: the file's own, else the model's default (``default_format``). ``images``: paths, Pillow images, RGB arrays
    [H, W, 3] (uint8, or float in [0, 1]) or an [N, H, W, 3] batch of them; each is cropped
    and resized as TF-slim evaluates. With ``skip_errors`` an image that cannot be used
    gets ``error`` set instead of failing the call.
    """
    crop = check_crop(crop)
    named = named_images(images)
    # Find the model without restoring anything, so bad images fail before a download.
    ref = None if isinstance(model, RestoredModel) else locate(model, format, catalog=catalog)
    entry = model.entry if isinstance(model, RestoredModel) else ref.entry
    if not 1 <= top <= entry.num_classes:
        raise UsageError(f"top must be between 1 and {entry.num_classes}, got {top}", params=("top",))
    if not named:
        raise UsageError("no images given", hint="pass one or more images")
    prepared, errors = [], {}
    for i, (name, image) in enumerate(named):
        try:
            prepared.append(prepare_image(image, entry.input_size, crop, name=name))
        except (DataError, UsageError) as exc:  # unreadable, missing, not an image, wrong shape
            if not skip_errors:
                raise
            errors[i] = exc.message
    if not prepared:
        return [Classification(name, error=errors[i]) for i, (name, _) in enumerate(named)]
    if ref is not None:
        model = ref.load(cache_dir=cache_dir, threads=threads, runtime=runtime, openvino_device=openvino_device,
                           precision=precision)
    rows = iter(model(np.stack(prepared)))
    labels = model.labels
    return [Classification(name, error=errors[i]) if i in errors else
            Classification(name, predictions(next(rows), top, labels)) for i, (name, _) in enumerate(named)]
