"""Each file format of the upstream tarballs (and of fine-tuned models), behind one interface.

    import zoo
    model = zoo.restore("v1_0.25_128_quant", format="tflite")   # zoo.formats.resolve.restore
    probs = model(images)            # float32 [N,H,W,3] in [-1,1] -> [N, classes]

``base`` is the interface every loader returns; ``resolve`` is the one way from what a user
names to a model (``locate`` finds it, ``ModelRef.load`` restores it); each format has its own
loader module (``tflite``, ``frozen``, ``ckpt``, ``finetuned``).
"""

from __future__ import annotations

from .base import FORMATS, RestoredModel
from .resolve import ModelRef, load_file, locate, restore, restore_file

__all__ = ["FORMATS", "ModelRef", "RestoredModel", "locate", "restore"]
