"""Run a .tflite flatbuffer with LiteRT (``ai_edge_litert``), float or uint8/int8.

Quantized models are fed and read with the quantization parameters the interpreter
reports for their own input and output tensors, never with constants from the
catalog, so a re-quantized file still answers in the common float interface.
Upstream files have a fixed batch of 1: batches run image by image unless the
model's batch dimension is dynamic, in which case the input is resized once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..catalog.registry import Entry
from ..fetching.layout import spec_for_path
from ..errors import MissingDependencyError, RestoreError
from .base import RestoredModel, check_input_shape, run_in_chunks


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise MissingDependencyError("ai-edge-litert", "running .tflite models") from None
    return Interpreter


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """float -> integer tensor values, rounded (half to even) and clipped to the dtype's range."""
    info = np.iinfo(dtype)
    q = np.divide(values, scale, dtype=np.float64 if values.dtype == np.float64 else np.float32)
    np.rint(q, out=q)  # one buffer for every step: this runs once per image in eval
    q += zero_point
    np.clip(q, info.min, info.max, out=q)
    return q.astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


class TFLiteModel(RestoredModel):
    """A LiteRT interpreter behind the common float interface."""

    format = "tflite"
    runtime = "litert"

    def __init__(self, entry: Entry, source: Path, interpreter: Any, threads: int | None):
        super().__init__(entry, source)
        self.interpreter = interpreter
        self.threads = threads
        self._input = interpreter.get_input_details()[0]
        self._output = interpreter.get_output_details()[0]
        self._batch = int(self._input["shape"][0])
        self._dynamic_batch = int(self._input["shape_signature"][0]) == -1

    # ---------------------------------------------------------------- running
    def _predict(self, batch: np.ndarray) -> np.ndarray:
        if self._dynamic_batch and batch.shape[0] != self._batch:
            self._resize(batch.shape[0])
        return run_in_chunks(batch, self._batch, self._invoke)

    def _resize(self, n: int) -> None:
        shape = [n, *(int(d) for d in self._input["shape"][1:])]
        self.interpreter.resize_tensor_input(self._input["index"], shape, strict=True)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = n

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        detail = self._input
        dtype = np.dtype(detail["dtype"])
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = detail["quantization"]
            chunk = quantize(chunk, scale, zero_point, dtype)
        else:
            chunk = chunk.astype(dtype)
        self.interpreter.set_tensor(detail["index"], chunk)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])
        if np.issubdtype(out.dtype, np.integer):
            scale, zero_point = self._output["quantization"]
            out = dequantize(out, scale, zero_point)
        return out.reshape(out.shape[0], -1)

    def copy(self) -> "TFLiteModel":
        """An independent one-thread copy of this model, to run other images side by side.

        On a CPU, N one-thread interpreters working on different images get through more
        images per second than one interpreter splitting every image over N threads: no
        hand-offs inside an image, no idle workers spinning (bench_eval.py measures it).
        The copy must show the same tensors as this model, or the file changed meanwhile.
        """
        from .._util.runtime_logs import native_stderr_hidden

        Interpreter = _interpreter_class()
        changed = RestoreError(f"{self.entry.id}: {self.source} changed while it was being loaded",
                               hint="run the command again")
        try:
            with native_stderr_hidden():
                interpreter = Interpreter(model_content=self.source.read_bytes(), num_threads=1)
                interpreter.allocate_tensors()
        except (OSError, ValueError, RuntimeError):  # gone, or no longer a model LiteRT can load
            raise changed from None
        copy = TFLiteModel(self.entry, self.source, interpreter, 1)
        if copy._dynamic_batch and copy._batch != self._batch:
            copy._resize(self._batch)
        if _signature(copy) != _signature(self):
            raise changed
        return copy

    # ---------------------------------------------------------------- describing
    def _summary_extra(self) -> dict[str, Any]:
        inp, out = self._input, self._output
        return {
            "input_dtype": np.dtype(inp["dtype"]).name,
            "input_quantization": _quant(inp),
            "output_dtype": np.dtype(out["dtype"]).name,
            "output_quantization": _quant(out),
            "output_tensor": out["name"],
            "batch": "dynamic" if self._dynamic_batch else int(inp["shape_signature"][0]),
            "threads": self.threads,
            "parameters": count_constants(self.interpreter),
            "file_bytes": self.source.stat().st_size,
        }

    def export(self, target: Path) -> Path:
        """Write a .tflite serving ``serving_default``: images [N,H,W,3] -> probabilities.

        ``target`` ending in ``.tflite`` is the file; anything else is a directory that gets the
        source's file name. The batch is dynamic when the graph allows it (upstream's does, after
        its Reshape is patched); otherwise it stays 1 and ``export_batch`` says so.
        """
        from .._util.atomic import atomic_write_bytes
        from .tflite_signature import sign_flatbuffer

        target = Path(target)
        if target.suffix != ".tflite":
            target = target / self.source.name
        if target.exists() and target.resolve() == self.source.resolve():
            raise RestoreError(f"{self.entry.id}: export target {target} is the model file itself",
                               hint="export to another file or directory")
        try:
            signed = sign_flatbuffer(self.source.read_bytes(), num_inputs=len(self.interpreter.get_input_details()),
                                     num_outputs=len(self.interpreter.get_output_details()))
        except ValueError as exc:
            raise RestoreError(f"{self.entry.id}: cannot add a serving signature to {self.source}: {exc}") from None
        atomic_write_bytes(target, signed.data)
        self.export_batch = "dynamic" if signed.dynamic_batch else "fixed at 1"
        return target


def _signature(model: TFLiteModel) -> tuple:
    """What must agree between copies of one model: shapes, types and quantization of its ends."""
    return tuple((tuple(int(d) for d in t["shape"]), np.dtype(t["dtype"]).name, tuple(t["quantization"]))
                 for t in (model._input, model._output))


def _quant(detail: dict) -> dict[str, float] | None:
    scale, zero_point = detail["quantization"]
    if not scale:
        return None
    return {"scale": float(scale), "zero_point": int(zero_point)}


def count_constants(interpreter: Any) -> int | None:
    """Elements in tensors no op produces and that are not model inputs: the weights.

    Uses LiteRT's op listing (``_get_ops_details``); None when a runtime lacks it.
    """
    try:
        ops = interpreter._get_ops_details()
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    except (AttributeError, ValueError, RuntimeError):
        return None
    produced = {int(i) for op in ops for i in op["outputs"]}
    consumed = {int(i) for op in ops for i in op["inputs"] if i >= 0}
    inputs = {d["index"] for d in interpreter.get_input_details()}
    constant = consumed - produced - inputs
    return int(sum(int(np.prod(tensors[i]["shape"])) for i in constant if i in tensors))


def load_tflite(entry: Entry, path: Path, *, threads: int | None = None) -> TFLiteModel:
    """Open ``path`` with LiteRT and check it fits the catalog entry."""
    Interpreter = _interpreter_class()
    path = Path(path)
    if threads is not None and threads < 1:
        from ..errors import UsageError

        raise UsageError(f"threads must be at least 1, got {threads}", params=("threads",))
    from .._util.runtime_logs import native_stderr_hidden

    try:
        with native_stderr_hidden():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("this file needs the EdgeTPU runtime; use the CPU .tflite of the same model"
                if "edgetpu" in str(exc).lower() else
                f"the file may be damaged: `mobilenet-zoo verify --repair {spec_for_path(entry, path)}`")
        raise RestoreError(f"{entry.id}: LiteRT cannot load {path}: {first}", hint=hint) from None
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) < 1:
        raise RestoreError(f"{entry.id}: {path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                           "expected one image input and a class output")
    check_input_shape(entry, path, [int(d) for d in inputs[0]["shape"]], "LiteRT")
    _report_input_quantization(entry, path, inputs[0])
    return TFLiteModel(entry, path, interpreter, threads)


def _report_input_quantization(entry: Entry, path: Path, detail: dict) -> None:
    """The file's own input quantization is what feeds it; say once when the catalog's differs
    (EdgeTPU's int8 file: scale 0.0108689, zero point -6, not the uint8 file's 1/128 and 128)."""
    from .. import notices

    catalog = entry.input_quantization
    if catalog is None:
        return
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        notices.warn(f"{entry.id}: {path.name} takes float input, the catalog says uint8; using the file's")
        return
    scale, zero_point = detail["quantization"]
    if abs(scale - catalog["scale"]) > 1e-3 * catalog["scale"] or int(zero_point) != int(catalog["zero_point"]):
        notices.warn(f"{entry.id}: {path.name} quantizes its input with scale {scale:g}, zero point "
                     f"{int(zero_point)} (the catalog says {catalog['scale']:g}, {catalog['zero_point']:g}); "
                     "using the file's")
