"""scikit-learn's bundled UCI optical digits (1797 real 8x8 scans) as class folders of PNGs.

Real data nobody here made up, with no download: ``DIR/<digit>/<index>.png``, dark ink on
white like a scan, upscaled with bilinear filtering to ``size`` pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_digits(directory: Path, size: int = 32, limit: int | None = None,
                 classes: tuple[int, ...] = tuple(range(10))) -> Path:
    """Write the digits (the first ``limit`` of them, if given) and return ``directory``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    directory = Path(directory)
    for index, (image, target) in enumerate(zip(digits.images, digits.target)):
        if limit is not None and index >= limit:
            break
        if int(target) not in classes:
            continue
        pixels = (255.0 - image * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        folder = directory / str(int(target))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BILINEAR).save(
            folder / f"{index:04d}.png")
    return directory
