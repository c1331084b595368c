"""Image decoding and preprocessing (zoo.data.images) and the label list (zoo.data.labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from zoo.data import images, labels
from zoo.errors import DataError, UsageError

DATA = Path(__file__).resolve().parent / "data"
CAT = DATA / "cat.bmp"


def test_bmp_becomes_float_batch_in_range():
    arr = images.load_image(CAT, (128, 128))
    assert arr.shape == (128, 128, 3) and arr.dtype == np.float32
    assert -1.0 <= arr.min() < -0.5 and 0.5 < arr.max() <= 1.0
    batch = images.load_images([CAT, DATA / "bird.bmp"], (96, 160, 3))
    assert batch.shape == (2, 96, 160, 3)


def test_scaling_maps_0_and_255_to_minus_one_and_one(tmp_path):
    path = tmp_path / "solid.png"
    Image.new("RGB", (40, 30), (0, 255, 51)).save(path)
    arr = images.load_image(path, (8, 8), crop=1.0)
    np.testing.assert_allclose(arr[..., 0], -1.0)
    np.testing.assert_allclose(arr[..., 1], 1.0)
    np.testing.assert_allclose(arr[..., 2], 51 / 127.5 - 1, atol=1e-6)


def test_png_and_jpeg_decode_like_the_bmp(tmp_path):
    reference = images.load_image(CAT, (128, 128))
    with Image.open(CAT) as img:
        img.save(tmp_path / "cat.png")
        img.save(tmp_path / "cat.jpg", quality=95)
    np.testing.assert_array_equal(images.load_image(tmp_path / "cat.png", (128, 128)), reference)
    jpeg = images.load_image(tmp_path / "cat.jpg", (128, 128))
    assert np.abs(jpeg - reference).mean() < 0.03  # lossy, but the same picture


def test_central_crop_keeps_the_middle(tmp_path):
    img = Image.new("RGB", (100, 80), (255, 0, 0))
    img.paste((0, 0, 255), (25, 20, 75, 60))  # the central half is blue
    path = tmp_path / "framed.png"
    img.save(path)
    cropped = images.load_image(path, (16, 16), crop=0.5)
    np.testing.assert_allclose(cropped[..., 2], 1.0, atol=1e-6)
    np.testing.assert_allclose(cropped[..., 0], -1.0, atol=1e-6)
    whole = images.load_image(path, (16, 16), crop=1.0)
    assert whole[0, 0, 0] == pytest.approx(1.0)  # the red border is still there


def test_default_crop_is_slim_eval_crop():
    assert images.DEFAULT_CROP == images.SLIM_EVAL_CROP == 0.875
    a = images.load_image(CAT, (64, 64))
    b = images.load_image(CAT, (64, 64), crop=0.875)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, images.load_image(CAT, (64, 64), crop=1.0))


def test_alpha_is_composited_on_white_and_grey_becomes_rgb(tmp_path):
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    np.testing.assert_allclose(images.load_image(tmp_path / "clear.png", (4, 4)), 1.0)
    Image.new("L", (10, 10), 0).save(tmp_path / "grey.png")
    grey = images.load_image(tmp_path / "grey.png", (4, 4))
    assert grey.shape == (4, 4, 3)
    np.testing.assert_allclose(grey, -1.0)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 20), (0, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    img.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert images.open_rgb(tmp_path / "rotated.jpg").size == (20, 60)


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    (b"this is plain text, not a picture\n", "not an image Pillow can read"),
])
def test_unreadable_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "notes.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        images.load_image(path, (8, 8))
    assert str(path) in info.value.message


def test_truncated_jpeg_and_directory(tmp_path):
    with Image.open(CAT) as img:
        img.save(tmp_path / "cat.jpg")
    data = (tmp_path / "cat.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="half.jpg"):
        images.load_image(tmp_path / "half.jpg", (8, 8))
    with pytest.raises(DataError, match="a directory, not an image"):
        images.load_image(tmp_path, (8, 8))


@pytest.mark.parametrize("crop", [0.0, -0.5, 1.01])
def test_crop_out_of_range(crop):
    with pytest.raises(UsageError, match=r"^crop must be a fraction in \(0, 1\]"):
        images.load_image(CAT, (8, 8), crop=crop)


def test_no_images():
    with pytest.raises(UsageError, match="no images"):
        images.load_images([], (8, 8))


# ------------------------------------------------------------------ labels
def test_labels_are_the_1001_slim_classes():
    names = labels.imagenet_labels()
    assert len(names) == 1001
    assert names[0] == "background"
    assert labels.label(20) == "chickadee"
    assert labels.label(19, num_classes=1000) == "chickadee"  # 1000-class heads have no background
    assert labels.short(labels.label(282)) == "tabby"
    with pytest.raises(IndexError):
        labels.label(1001)


def test_packaged_labels_match_the_vendored_copy():
    packaged = Path(labels.__file__).parent / labels.LABELS_FILE
    assert packaged.read_bytes() == (DATA / "imagenet_labels.txt").read_bytes()
