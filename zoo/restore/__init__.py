"""Turn a fetched model (checkpoint, frozen graph or .tflite) into one callable interface.

    from zoo.restore import restore
    model = restore("v1_0.25_128_quant", format="tflite")
    probs = model(images)            # float32 [N,H,W,3] in [-1,1] -> [N,1001]

See ``base`` for the interface; each format has its own loader module.
"""

from __future__ import annotations

from .base import FORMATS, RestoredModel, restore, restore_file, restore_from_dir

__all__ = ["FORMATS", "RestoredModel", "restore", "restore_file", "restore_from_dir"]
