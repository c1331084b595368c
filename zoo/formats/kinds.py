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

# Files that only come from a conversion (`export --to onnx|openvino`), never from a tarball:
# a local .onnx or OpenVINO IR .xml is run as it is; `--format` still names the tarball's files.
CONVERTED_FORMATS = ("onnx", "openvino")

# The engines that run a model's file. Each format has the runtime it ran on before runtimes
# could be chosen; the others run it through a conversion or read it themselves.
RUNTIMES = ("litert", "tensorflow", "onnxruntime", "openvino")
DEFAULT_RUNTIME = {"tflite": "litert", "frozen": "tensorflow", "ckpt": "tensorflow",
                   "onnx": "onnxruntime", "openvino": "openvino"}
# Which files each runtime runs: ONNX Runtime takes a .tflite through tf2onnx (in memory);
# OpenVINO reads .tflite and ONNX files itself, and its own IR.
RUNTIME_FORMATS = {"litert": ("tflite",), "tensorflow": ("frozen", "ckpt"),
                   "onnxruntime": ("onnx", "tflite"), "openvino": ("openvino", "tflite", "onnx")}
# The extra that installs each runtime (`pip install 'mobilenet-zoo[<extra>]'`), and its module.
RUNTIME_EXTRA = {"litert": "tf", "tensorflow": "tf", "onnxruntime": "onnx", "openvino": "openvino"}
RUNTIME_MODULE = {"litert": "ai_edge_litert", "tensorflow": "tensorflow", "onnxruntime": "onnxruntime",
                  "openvino": "openvino"}
# OpenVINO's inference precision: f32 unless another is asked for (bf16 moved probabilities by
# up to 0.005 on a bf16 CPU: issue 18). The other runtimes compute in the file's own types.
PRECISIONS = ("f32", "bf16", "f16")
