"""The eval crop+resize geometry, pinned against TensorFlow's own ops.

TF-slim evaluates with ``tf.image.central_crop`` then a bilinear resize without
antialiasing; ``zoo.data.images`` reimplements both in numpy (so the .tflite path never
imports TensorFlow). Random pixels on odd, even, portrait, landscape and tiny sizes,
crop fractions that leave odd margins: a fraction squared, an offset taken from the
wrong axis, a half-pixel slip or Pillow's antialiased filter all fail here.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from zoo.data.images import central_crop_box, preprocess_array, resize_bilinear

SIZES = [(341, 512), (512, 341), (224, 224), (225, 223), (101, 77), (64, 300), (7, 9), (3, 2)]
OUT = [(224, 224), (128, 128), (160, 96), (17, 31)]


def _pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("fraction", [0.875, 0.5, 0.33, 0.9, 1.0])
@pytest.mark.parametrize("hw", SIZES)
def test_central_crop_box_is_tf_central_crop(hw, fraction):
    pixels = _pixels(*hw)
    expected = tf.image.central_crop(pixels, fraction).numpy()
    top, left, h, w = central_crop_box(hw[0], hw[1], fraction)
    np.testing.assert_array_equal(pixels[top:top + h, left:left + w], expected)


@pytest.mark.parametrize("out", OUT)
@pytest.mark.parametrize("hw", SIZES)
def test_resize_is_tf_bilinear_without_antialias(hw, out):
    pixels = _pixels(*hw)
    expected = tf.image.resize(pixels[None].astype(np.float32), out, "bilinear", antialias=False)[0].numpy()
    np.testing.assert_allclose(resize_bilinear(pixels, out), expected, atol=2e-4, rtol=0)


@pytest.mark.parametrize("hw", SIZES[:4])
def test_legacy_tf1_resize_is_available(hw):
    pixels = _pixels(*hw).astype(np.float32)
    expected = tf.compat.v1.image.resize_bilinear(pixels[None], (128, 96), align_corners=False)[0].numpy()
    np.testing.assert_allclose(resize_bilinear(pixels, (128, 96), half_pixel_centers=False), expected,
                               atol=2e-4, rtol=0)


@pytest.mark.parametrize("crop", [0.875, 1.0, 0.6])
@pytest.mark.parametrize("hw", [(341, 512), (375, 500), (333, 221)])
def test_whole_eval_preprocessing_matches_slim(hw, crop):
    """inception_preprocessing.preprocess_for_eval: to [0,1], crop, resize, (x - 0.5) * 2."""
    pixels = _pixels(*hw, seed=5)
    image = tf.image.convert_image_dtype(pixels, tf.float32)
    if crop < 1.0:
        image = tf.image.central_crop(image, crop)
    image = tf.image.resize(image[None], (224, 224), "bilinear", antialias=False)[0]
    expected = ((image - 0.5) * 2.0).numpy()
    np.testing.assert_allclose(preprocess_array(pixels, (224, 224), crop), expected, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- decoding
def _jpeg(mode: str, **save) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(7)
    smooth = np.cumsum(rng.integers(-9, 10, (61, 83, 3)), axis=1)  # photo-like gradients, not noise
    rgb = Image.fromarray(np.clip(smooth + 128, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    rgb.convert(mode).save(out, "JPEG", **save)
    return out.getvalue()


@pytest.mark.parametrize("mode, save", [
    ("RGB", {"quality": 90}),                        # 4:2:0, Pillow's default
    ("RGB", {"quality": 95, "subsampling": 0}),      # 4:4:4
    ("RGB", {"quality": 85, "progressive": True}),
    ("L", {"quality": 90}),                          # greyscale: the three channels repeat it
])
def test_jpeg_decoding_is_tf_decode_jpeg(mode, save):
    """TF-slim's reader decodes with tf.io.decode_jpeg (libjpeg-turbo, fast integer DCT): the
    pixels eval and classify see must be the same, bit for bit."""
    from zoo.data.images import decode_pixels

    data = _jpeg(mode, **save)
    expected = tf.io.decode_jpeg(data, channels=3).numpy()
    np.testing.assert_array_equal(decode_pixels(data), expected)


def test_cmyk_jpeg_decodes_through_pillow():
    from zoo.data.images import decode_pixels

    pixels = decode_pixels(_jpeg("CMYK", quality=90))
    assert pixels.shape == (61, 83, 3) and pixels.dtype == np.uint8


def test_oversized_jpeg_is_refused_like_pillow_refuses_it(monkeypatch):
    """Pillow's decompression-bomb limit holds on the fast JPEG path too."""
    from PIL import Image

    from zoo.data.images import decode_pixels

    data = _jpeg("RGB", quality=90)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 61 * 83 // 2 - 1)  # a setting Pillow documents
    with pytest.raises(Image.DecompressionBombError):
        decode_pixels(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 61 * 83 // 2 + 1)
    assert decode_pixels(data).shape == (61, 83, 3)
