"""Photos on disk -> the float32 [-1, 1] batches every restored model takes.

Decoding is Pillow's (JPEG, PNG, BMP and whatever else it reads). The steps follow
TF-slim's MobileNet eval preprocessing: RGB, optional central crop, bilinear resize to
the model's input, then ``x / 127.5 - 1``.

Default: ``crop=0.875`` (``DEFAULT_CROP``), TF-slim's eval preprocessing, because that is
how the catalog's top-1 figures were measured, so a user's results are comparable
with them. On the project's real photos it is also the more confident setting (the
v1 0.5_160 model finds the dragonfly only with it). ``crop=1.0`` is a plain resize of
the whole image, as the TFLite examples do and as the expected answers in
tests/data/SOURCES_realdata.md were measured; use it for photos whose subject
touches the border.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .catalog import EVAL_CENTRAL_CROP
from .errors import MissingDependencyError, UsageError

DEFAULT_CROP = EVAL_CENTRAL_CROP  # TF-slim eval: central_crop(0.875) then bilinear resize
SLIM_EVAL_CROP = EVAL_CENTRAL_CROP


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise MissingDependencyError("pillow", "reading images") from None
    return Image, ImageOps


def check_crop(crop: float) -> float:
    if not 0.0 < crop <= 1.0:
        raise UsageError(f"--crop must be a fraction in (0, 1], got {crop}",
                         hint=f"1.0 keeps the whole image; {SLIM_EVAL_CROP} (default) is TF-slim's eval crop")
    return float(crop)


def open_rgb(path: str | Path):
    """Decode ``path`` to an RGB Pillow image (EXIF rotation applied, alpha on white)."""
    Image, ImageOps = _pil()
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
    except FileNotFoundError:
        raise UsageError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not an image") from None
    except Image.DecompressionBombError as exc:
        raise UsageError(f"{path} is too large to decode safely: {exc}",
                         hint="downscale the image first") from None
    except Image.UnidentifiedImageError:
        raise UsageError(f"{path} is not an image Pillow can read",
                         hint="pass a JPEG, PNG or BMP file") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise UsageError(f"cannot decode image {path}: {exc}", hint="is the file complete?") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8))
    return img.convert("RGB")


def preprocess(image, size: Sequence[int], crop: float = DEFAULT_CROP) -> np.ndarray:
    """An RGB Pillow image -> float32 [H, W, 3] in [-1, 1]: central crop, bilinear resize."""
    Image, _ = _pil()
    crop = check_crop(crop)
    height, width = int(size[0]), int(size[1])
    if crop < 1.0:  # whole pixels, as tf.image.central_crop does, so no pixel outside leaks in
        w, h = image.size
        left, top = int((w - w * crop) / 2), int((h - h * crop) / 2)
        image = image.crop((left, top, w - left, h - top))
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 127.5 - 1.0


def load_image(path: str | Path, size: Sequence[int], crop: float = DEFAULT_CROP) -> np.ndarray:
    """One file -> float32 [H, W, 3] in [-1, 1]."""
    return preprocess(open_rgb(path), size, crop)


def load_images(paths: Iterable[str | Path], size: Sequence[int], crop: float = DEFAULT_CROP) -> np.ndarray:
    """Several files -> one float32 batch [N, H, W, 3]; the first bad file raises."""
    arrays = [load_image(p, size, crop) for p in paths]
    if not arrays:
        raise UsageError("no images given", hint="pass one or more image files")
    return np.stack(arrays)
