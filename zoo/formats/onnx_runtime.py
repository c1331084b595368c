"""Run a model with ONNX Runtime: an ``.onnx`` file, or a ``.tflite`` converted on the way in.

ONNX files come from a conversion of the model's ``.tflite`` with tf2onnx
(:func:`tflite_to_onnx`; ``export --to onnx`` writes one to keep). A uint8 ``.tflite``
becomes an ONNX model with uint8 ends, whose scales the conversion writes into the file's
metadata (``zoo.formats.ends``). Sessions run on the CPU execution provider with the
requested intra-op threads (one inter-op thread: the graph is a chain).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..catalog.registry import Entry
from ..errors import MissingDependencyError, RestoreError, UsageError
from .base import RestoredModel, check_input_shape, run_in_chunks
from .ends import METADATA_KEY, Ends, check_integer_ends, summary_of

# The ONNX opset tf2onnx writes; ONNX Runtime 1.17+ runs it (QuantizeLinear per-axis needs >= 13).
OPSET = 17
_ONNX_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def onnxruntime_module() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "running models with ONNX Runtime", extra="onnx") from None
    return onnxruntime


def converter_versions() -> dict[str, str]:
    """What a converted file depends on: recorded next to it, part of a derived file's identity."""
    import onnx
    import tf2onnx

    return {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "opset": str(OPSET)}


def tflite_to_onnx(tflite: Any) -> bytes:
    """The ONNX model of a LiteRT-loaded ``TFLiteModel``, with its integer ends recorded."""
    from .._util.runtime_logs import import_tensorflow, native_stderr_hidden

    try:
        import_tensorflow()  # tf2onnx imports it; first, so its log noise is turned down
        import tf2onnx
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "tf2onnx", "converting .tflite files to ONNX", extra="onnx") from None
    import logging

    logging.getLogger("tf2onnx").setLevel(logging.CRITICAL)  # what it cannot convert is reported below
    try:
        with native_stderr_hidden():
            proto, _ = tf2onnx.convert.from_tflite(str(tflite.source), opset=OPSET)
    except Exception as exc:  # tf2onnx raises anything from a missing op handler to a KeyError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RestoreError(f"{tflite.entry.id}: tf2onnx cannot convert {tflite.source}: {first}",
                           hint="run the .tflite with --runtime litert or openvino (which reads it itself)") from None
    # tf2onnx keeps a TFLite op it has no handler for as a node of that name, and logs it: no
    # runtime could load the result, so it is refused here, naming the op
    left = sorted({node.op_type for node in proto.graph.node if node.op_type.startswith(("TFL_", "TF_"))})
    if left:
        raise RestoreError(f"{tflite.entry.id}: tf2onnx cannot convert {tflite.source}: it has no ONNX op for "
                           f"{', '.join(op.removeprefix('TFL_') for op in left)}",
                           hint="run the .tflite with --runtime litert or openvino (which reads it itself)")
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, Ends.of_tflite(tflite).to_metadata()
    return proto.SerializeToString()


class ONNXModel(RestoredModel):
    """An ONNX Runtime session behind the common float interface."""

    runtime = "onnxruntime"

    def __init__(self, entry: Entry, source: Path, model: bytes | Path, fmt: str, threads: int | None):
        super().__init__(entry, source)
        self.format = fmt  # "onnx", or "tflite" when the session runs a converted .tflite
        self.threads = threads
        self._model = model
        self.session = _session(entry, source, model, threads)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self._input_name = inp.name
        shape = inp.shape
        check_input_shape(entry, source, [d if isinstance(d, int) else -1 for d in shape], "ONNX Runtime")
        self._batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._types = (_ONNX_TYPES.get(inp.type, inp.type), _ONNX_TYPES.get(out.type, out.type))
        meta = self.session.get_modelmeta().custom_metadata_map
        self.ends = Ends.from_metadata(meta.get(METADATA_KEY), str(source))
        check_integer_ends(self.ends, *self._types, str(source))

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return run_in_chunks(batch, self._batch, self._invoke)

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input_name: self.ends.feed(chunk)})[0]
        out = self.ends.read(out)
        return out.reshape(out.shape[0], -1)

    def copy(self) -> "ONNXModel":
        """A one-thread session on the same model, to run other images side by side."""
        return ONNXModel(self.entry, self.source, self._model, self.format, 1)

    def _summary_extra(self) -> dict[str, Any]:
        ort = onnxruntime_module()
        return {"input_dtype": self._types[0], "output_dtype": self._types[1],
                "input_quantization": summary_of(self.ends.input), "output_quantization": summary_of(self.ends.output),
                "batch": self._batch or "dynamic", "threads": self.threads, "precision": "the file's own types",
                "runtime_version": ort.__version__,
                "notes": ["converted from the .tflite with tf2onnx in memory"] if self.format == "tflite" else []}


def _session(entry: Entry, source: Path, model: bytes | Path, threads: int | None) -> Any:
    ort = onnxruntime_module()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile: pybind classes without a common base
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RestoreError(f"{entry.id}: ONNX Runtime cannot load {source}: {first}",
                           hint="the file may be damaged: export it again (`mobilenet-zoo export MODEL --to onnx`)") from None


def load_onnx(entry: Entry, path: Path, *, threads: int | None = None) -> ONNXModel:
    """Open an ``.onnx`` file with ONNX Runtime."""
    _check_threads(threads)
    return ONNXModel(entry, Path(path), Path(path), "onnx", threads)


def load_tflite_with_onnxruntime(entry: Entry, path: Path, *, threads: int | None = None) -> ONNXModel:
    """Convert a ``.tflite`` to ONNX in memory (LiteRT reads its quantization) and run that."""
    _check_threads(threads)
    onnxruntime_module()  # the missing runtime is named before the conversion is paid for
    from .tflite import load_tflite

    return ONNXModel(entry, Path(path), tflite_to_onnx(load_tflite(entry, path, threads=1)), "tflite", threads)


def _check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}", params=("threads",))
