"""The names of the model formats and weight sets: one home for the library and the CLI's choices.

Light on purpose (no numpy, no TensorFlow): the command line builds its ``--format`` and
``--weights`` choices from these tuples when it starts.
"""

from __future__ import annotations

FORMATS = ("ckpt", "frozen", "tflite")
# Which catalog ``files:`` role each format loads from.
ROLE_OF_FORMAT = {"ckpt": "checkpoint", "frozen": "frozen_graph", "tflite": "tflite"}
# A catalog model with no format asked for loads the first of these its tarball has:
# the .tflite runs without TensorFlow, the frozen graph needs no variable restore.
DEFAULT_FORMAT_ORDER = ("tflite", "frozen", "ckpt")
FORMAT_ALIASES = {"checkpoint": "ckpt", "pb": "frozen", "frozen_graph": "frozen", "lite": "tflite"}
# How a slim checkpoint's values are read (see ``zoo.formats.ckpt``).
WEIGHT_SETS = ("ema", "ema-trainable", "raw")
