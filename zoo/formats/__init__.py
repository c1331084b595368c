"""Each file format of the upstream tarballs, turned into one callable interface.

    import zoo
    model = zoo.restore("v1_0.25_128_quant", format="tflite")   # zoo.formats.base.restore
    probs = model(images)            # float32 [N,H,W,3] in [-1,1] -> [N,1001]

See ``base`` for the interface; each format has its own loader module. ``restore`` is the
one public way in; ``restore_file`` / ``restore_from_dir`` are internal building blocks
(no look-up, no fetch) kept importable for tests and benchmarks.
"""

from __future__ import annotations

from .base import FORMATS, RestoredModel, restore, restore_file, restore_from_dir

__all__ = ["FORMATS", "RestoredModel", "restore"]
