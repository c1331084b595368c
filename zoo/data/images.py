"""Photos (files, Pillow images, RGB arrays) -> the float32 [-1, 1] batches every restored model takes.

Decoding: JPEGs through simplejpeg (libjpeg-turbo with ``tf.io.decode_jpeg``'s settings, bit
for bit), everything else through Pillow; files are read under ``zoo.data.imagefiles``' rules,
and every decoding failure is told the same way (``decode_failure``). The steps follow
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

import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..catalog.registry import EVAL_CENTRAL_CROP
from ..errors import MissingDependencyError, UsageError
from .imagefiles import ImageFileError, read_image_bytes

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
        raise UsageError(f"crop must be a fraction in (0, 1], got {crop}",
                         hint=f"1.0 keeps the whole image; {SLIM_EVAL_CROP} (default) is TF-slim's eval crop",
                         params=("crop",))
    return float(crop)


def decode_failure(exc: BaseException) -> str | None:
    """Why decoding failed, in a few words, for every way bad data fails to decode (None: not a
    data problem, i.e. a bug). The one mapping `classify`, `eval`, `finetune` and calibration use."""
    Image, _ = _pil()
    if isinstance(exc, ImageFileError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "a directory, not an image"
    if isinstance(exc, Image.DecompressionBombError):
        return f"too large to decode safely ({exc})"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):  # truncated or corrupt data
        return f"cannot decode: {getattr(exc, 'strerror', None) or exc or type(exc).__name__}"
    return None


def decode_file(path: str | Path, *, exif_rotate: bool = False) -> np.ndarray:
    """An image file -> uint8 RGB [H, W, 3] (``decode_pixels``), read under ``zoo.data.imagefiles``'
    rules; any failure is an ImageFileError naming the file and the reason."""
    try:
        return decode_pixels(read_image_bytes(path), exif_rotate=exif_rotate)
    except Exception as exc:  # noqa: BLE001 - decode_failure sorts data problems from bugs
        reason = decode_failure(exc)
        if reason is None:
            raise
        raise ImageFileError(path, reason) from None


def open_rgb(path: str | Path):
    """Decode ``path`` to an RGB Pillow image (EXIF rotation applied, alpha on white)."""
    Image, _ = _pil()
    return Image.fromarray(decode_file(path, exif_rotate=True))


def to_rgb(img):
    """Any decoded Pillow image -> RGB (alpha composited on white, 16-bit scaled to 8)."""
    Image, _ = _pil()
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8))
    return img.convert("RGB")


def _simplejpeg():
    try:
        import simplejpeg
    except ImportError:  # Pillow decodes then; JPEG pixels differ by TF's "decoder noise"
        return None
    return simplejpeg


def _exif_orientation(img) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block is no reason to refuse the picture
        return 1


def decode_pixels(data: bytes, *, exif_rotate: bool = False) -> np.ndarray:
    """Encoded image bytes -> uint8 RGB [H, W, 3], the pixels TF-slim's reader sees.

    JPEGs are decoded as ``tf.io.decode_jpeg`` does by default (libjpeg-turbo's fast
    integer DCT, fancy upsampling) through ``simplejpeg``, bit for bit; Pillow's default
    (the accurate DCT) differs by up to a few levels per pixel. Everything else, and
    JPEGs simplejpeg refuses (CMYK), goes through Pillow. ``exif_rotate`` applies the EXIF
    orientation (for `classify`'s phone photos; TF-slim applies none). Raises Pillow's
    errors (or ValueError) on data that is not a readable image.
    """
    import io

    Image, ImageOps = _pil()
    simplejpeg = _simplejpeg()
    if simplejpeg is not None and not exif_rotate and data[:3] == b"\xff\xd8\xff":
        # the common case, without Pillow's header parsing (pure Python, holding the GIL that
        # eval's other decoding threads wait for); CMYK and damaged headers go through Pillow
        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            colorspace = None
        if colorspace in ("YCbCr", "Gray", "RGB"):
            _refuse_bombs(Image, width, height)
            return _decode_jpeg_like_tf(simplejpeg, data)
    with Image.open(io.BytesIO(data)) as img:
        if exif_rotate and _exif_orientation(img) != 1:
            rotated = ImageOps.exif_transpose(img)
            rotated.load()
            return np.asarray(to_rgb(rotated), dtype=np.uint8)
        if img.format == "JPEG" and simplejpeg is not None and img.mode in ("RGB", "L"):
            return _decode_jpeg_like_tf(simplejpeg, data)
        img.load()
        return np.asarray(to_rgb(img), dtype=np.uint8)


def _decode_jpeg_like_tf(simplejpeg: Any, data: bytes) -> np.ndarray:
    """``tf.io.decode_jpeg``'s defaults: libjpeg-turbo's fast integer DCT, fancy upsampling."""
    return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)


def _refuse_bombs(Image: Any, width: int, height: int) -> None:
    """Pillow's own limit on pixels (``Image.MAX_IMAGE_PIXELS``), for images decoded without it."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > 2 * limit:
        raise Image.DecompressionBombError(f"Image size ({width * height} pixels) exceeds limit of "
                                           f"{2 * limit} pixels, could be decompression bomb DOS attack.")


def central_crop_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) of ``tf.image.central_crop``: whole pixels,
    the offset of each axis from that axis's own size, the same margin on both sides."""
    if fraction >= 1.0:
        return 0, 0, height, width
    top = int((height - height * fraction) / 2)
    left = int((width - width * fraction) / 2)
    return top, left, height - 2 * top, width - 2 * left


def _bilinear_axis(in_size: int, out_size: int, half_pixel_centers: bool):
    """Source indices and weights along one axis, as TensorFlow's resize kernel computes them."""
    # float32 throughout, as the kernel does, so the rounding matches too
    scale = np.float32(in_size) / np.float32(out_size)
    positions = np.arange(out_size, dtype=np.float32)
    source = (positions + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel_centers else positions * scale
    floor = np.floor(source)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(source), in_size - 1).astype(np.intp)
    return lower, upper, source - floor


def resize_bilinear(pixels: np.ndarray, size: Sequence[int], *, half_pixel_centers: bool = True,
                    scale: float = 1.0) -> np.ndarray:
    """[H, W, C] -> float32 [h, w, C]: ``tf.image.resize(..., "bilinear", antialias=False)``.

    No antialiasing (unlike Pillow's resize, which widens its filter when shrinking), no
    rounding back to uint8. ``half_pixel_centers=False`` is TF1's ``resize_bilinear``
    default (``align_corners=False``). ``scale`` multiplies each source pixel first, as
    ``convert_image_dtype`` does before TF-slim resizes (so the rounding matches too).
    """
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    y0, y1, wy = _bilinear_axis(in_h, out_h, half_pixel_centers)
    x0, x1, wx = _bilinear_axis(in_w, out_w, half_pixel_centers)
    # Work on [rows, columns * channels] views, so every step runs along whole rows (a
    # weight broadcast over a channel axis of 3 is several times slower than this).
    by_channel = np.arange(channels)
    columns0 = (x0[:, None] * channels + by_channel).ravel()
    columns1 = (x1[:, None] * channels + by_channel).ravel()
    wx = np.repeat(wx, channels)
    flat = pixels.reshape(in_h, in_w * channels)
    factor = np.float32(scale)

    def neighbours(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        values = flat[rows][:, columns].astype(np.float32)
        if scale != 1.0:
            values *= factor
        return values

    # TF interpolates along x in the two source rows, then between them along y; the
    # neighbours are gathered first, so the float work is at the output's size, in place
    top, right = neighbours(y0, columns0), neighbours(y0, columns1)
    right -= top
    right *= wx
    top += right
    bottom, right = neighbours(y1, columns0), neighbours(y1, columns1)
    right -= bottom
    right *= wx
    bottom += right
    bottom -= top
    bottom *= wy[:, None]
    top += bottom
    return top.reshape((out_h, out_w) + pixels.shape[2:])


def preprocess_array(pixels: np.ndarray, size: Sequence[int], crop: float = DEFAULT_CROP) -> np.ndarray:
    """RGB [H, W, 3], uint8 or float in [0, 1] -> float32 [h, w, 3] in [-1, 1], TF-slim's eval preprocessing.

    inception_preprocessing.preprocess_for_eval, step for step: ``convert_image_dtype`` to
    [0, 1], ``central_crop(crop)``, bilinear resize without antialiasing, ``(x - 0.5) * 2``.
    """
    top, left, h, w = central_crop_box(pixels.shape[0], pixels.shape[1], check_crop(crop))
    scale = 1.0 / 255.0 if pixels.dtype == np.uint8 else 1.0
    resized = resize_bilinear(pixels[top:top + h, left:left + w], size, scale=scale)
    resized -= np.float32(0.5)
    resized *= np.float32(2.0)
    return resized


# Training-time augmentation (``preprocess_tf(..., augment_seed=...)``): light on purpose. A random crop
# of 75-100% of each side replaces the central crop; brightness and contrast move a little. No
# flip: it is wrong for text, digits and anything with a handedness, and the classes are unknown.
AUGMENT_CROP = (0.75, 1.0)
AUGMENT_BRIGHTNESS = 0.08
AUGMENT_CONTRAST = (0.9, 1.1)


def preprocess_tf(tf: Any, pixels: Any, size: Sequence[int], crop: float = DEFAULT_CROP, *,
                  augment_seed: Any = None) -> Any:
    """``preprocess_array`` as TensorFlow ops, for ``tf.data`` pipelines: uint8 RGB [H, W, 3] ->
    float32 [h, w, 3] in [-1, 1], the same steps (a test holds the two equal on odd and even sizes).

    ``augment_seed`` (training only; an int [2] tensor): a random crop replaces the central one,
    then light jitter. The randomness is stateless, a pure function of the seed, so an image's
    augmented view is the same whenever it is computed: a resumed run sees what an uninterrupted
    one would have (``zoo.training.resume``)."""
    image = tf.image.convert_image_dtype(pixels, tf.float32)  # [0, 1]
    augment = augment_seed is not None
    if augment:
        seeds = tf.random.experimental.stateless_split(tf.cast(augment_seed, tf.int64), 4)
        shape = tf.shape(image)
        fraction = tf.random.stateless_uniform([], seeds[0], AUGMENT_CROP[0], AUGMENT_CROP[1])
        h = tf.maximum(1, tf.cast(tf.cast(shape[0], tf.float32) * fraction, tf.int32))
        w = tf.maximum(1, tf.cast(tf.cast(shape[1], tf.float32) * fraction, tf.int32))
        image = tf.image.stateless_random_crop(image, tf.stack([h, w, 3]), seeds[1])
    elif crop < 1.0:
        image = tf.image.central_crop(image, crop)
    image = tf.image.resize(image, [int(size[0]), int(size[1])], method="bilinear", antialias=False)
    if augment:
        image = tf.image.stateless_random_brightness(image, AUGMENT_BRIGHTNESS, seeds[2])
        image = tf.image.stateless_random_contrast(image, *AUGMENT_CONTRAST, seeds[3])
        image = tf.clip_by_value(image, 0.0, 1.0)
    return (image - 0.5) * 2.0


def decode_file_tf(tf: Any, path: Any) -> Any:
    """``decode_file`` inside a ``tf.data`` pipeline: the same decoder (so the same pixels and the
    same accepted formats as `eval`), uint8 [H, W, 3]."""
    def decode(raw: bytes) -> np.ndarray:
        return decode_file(raw.decode("utf-8", "surrogateescape"))

    image = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def preprocessed_batches(files: Sequence[str | Path], size: Sequence[int], batch: int = 1,
                         crop: float = DEFAULT_CROP, workers: int = 4) -> Iterator[np.ndarray]:
    """float32 [batch, h, w, 3] batches of ``files``, in order, decoded and preprocessed as `eval`
    does (``decode_file`` + ``preprocess_array``) in ``workers`` threads; a bad file raises
    ImageFileError naming it."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    def prepare(path: str | Path) -> np.ndarray:
        return preprocess_array(decode_file(path), size, crop)

    ahead = max(batch, 1) + 4 * max(1, workers)  # images in flight: memory stays flat
    pending: deque = deque()
    done: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="zoo-images") as pool:
        for path in files:
            pending.append(pool.submit(prepare, path))
            while len(pending) >= ahead:
                done.append(pending.popleft().result())
                if len(done) == batch:
                    yield np.stack(done)
                    done = []
        while pending:
            done.append(pending.popleft().result())
            if len(done) == batch:
                yield np.stack(done)
                done = []
    if done:
        yield np.stack(done)


def preprocess(image, size: Sequence[int], crop: float = DEFAULT_CROP) -> np.ndarray:
    """An RGB Pillow image -> float32 [H, W, 3] in [-1, 1]: central crop, bilinear resize."""
    return preprocess_array(np.asarray(image, dtype=np.uint8), size, crop)


def is_pil_image(obj: object) -> bool:
    """True for a Pillow image (without importing Pillow: only a loaded Pillow can have made one)."""
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(obj, module.Image)


def check_pixels(pixels: Any, name: str = "image") -> np.ndarray:
    """An RGB array [H, W, 3], uint8 (0-255) or float (0-1), or a UsageError saying what is wrong."""
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise UsageError(f"{name}: expected RGB pixels of shape [height, width, 3], got {list(arr.shape)}",
                         hint="pass an [H, W, 3] array (or an [N, H, W, 3] batch); for grayscale, "
                              "np.stack([a, a, a], axis=-1)")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise UsageError(f"{name}: pixels of type {arr.dtype} are ambiguous",
                         hint="pass uint8 (0-255) or float (0-1) pixels")
    low, high = float(np.min(arr)), float(np.max(arr))
    if not (0.0 <= low and high <= 1.0):  # also refuses NaN
        raise UsageError(f"{name}: float pixels must lie in [0, 1], got values in [{low:g}, {high:g}]",
                         hint="divide 0-255 values by 255, or pass them as uint8")
    return arr.astype(np.float32, copy=False)


def prepare_image(image: Any, size: Sequence[int], crop: float = DEFAULT_CROP, *, name: str = "image") -> np.ndarray:
    """A path, a Pillow image or RGB pixels -> float32 [h, w, 3] in [-1, 1], as `eval` prepares files."""
    if isinstance(image, (str, Path)):
        return load_image(image, size, crop)
    if is_pil_image(image):
        return preprocess(to_rgb(image), size, crop)
    return preprocess_array(check_pixels(image, name), size, crop)


def load_image(path: str | Path, size: Sequence[int], crop: float = DEFAULT_CROP) -> np.ndarray:
    """One file -> float32 [H, W, 3] in [-1, 1], decoded and preprocessed as `eval` does."""
    crop = check_crop(crop)
    return preprocess_array(decode_file(path, exif_rotate=True), size, crop)


def load_images(paths: Iterable[str | Path], size: Sequence[int], crop: float = DEFAULT_CROP) -> np.ndarray:
    """Several files -> one float32 batch [N, H, W, 3]; the first bad file raises."""
    arrays = [load_image(p, size, crop) for p in paths]
    if not arrays:
        raise UsageError("no images given", hint="pass one or more image files")
    return np.stack(arrays)
