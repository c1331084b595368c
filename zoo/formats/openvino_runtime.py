"""Run a model with OpenVINO, which reads ``.tflite`` and ONNX files itself, and its own IR.

OpenVINO compiles for a device (``CPU`` unless another is named) with an inference
precision: ``f32`` unless ``bf16`` or ``f16`` is asked for, because on a CPU with bf16 units
its default moves probabilities (issue 18 measured up to 0.005). The precision and thread
count in force are read back from the compiled model, not assumed. Integer ends (a uint8
``.tflite``) are fed with the quantization LiteRT reports for the ``.tflite``, or that the
ONNX metadata / IR ``rt_info`` records (``zoo.formats.ends``).
"""

from __future__ import annotations

import copy as _copy
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog.registry import Entry
from ..errors import MissingDependencyError, RestoreError, UsageError
from .base import RestoredModel, check_input_shape, run_in_chunks
from .ends import METADATA_KEY, Ends, check_integer_ends, summary_of
from .kinds import PRECISIONS

DEFAULT_DEVICE = "CPU"
RT_INFO_PATH = ["mobilenet_zoo", "ends"]
_FORMAT_OF_SUFFIX = {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}
_NUMPY_NAME = {"u8": "uint8", "i8": "int8", "f32": "float32"}  # OpenVINO element types -> numpy's


def _dtype(port: Any) -> str:
    name = port.get_element_type().get_type_name()
    return _NUMPY_NAME.get(name, name)


def openvino_module() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("openvino", "running models with OpenVINO", extra="openvino") from None
    return openvino


def read_model(entry: Entry, path: Path) -> tuple[Any, Any, Ends]:
    """(the OpenVINO Core, the model read from ``path``, its ends)."""
    ov = openvino_module()
    from .._util.runtime_logs import native_stderr_hidden

    core = ov.Core()
    path = Path(path)
    if path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
        raise RestoreError(f"{entry.id}: {path} has no weights file {path.with_suffix('.bin').name} beside it",
                           hint="an OpenVINO IR is an .xml and a .bin of the same name; copy both")
    try:
        with native_stderr_hidden():  # frontends that fail to parse print to fd 2
            model = core.read_model(str(path))
    except RuntimeError as exc:
        if "OpConversionFailure" in str(exc) or "translation is incomplete" in str(exc):
            raise RestoreError(f"{entry.id}: OpenVINO cannot convert {path}: {_first_line(exc)}",
                               hint="OpenVINO lacks an op this file uses; run it with --runtime litert "
                                    "or onnxruntime") from None
        raise RestoreError(f"{entry.id}: OpenVINO cannot read {path}: {_first_line(exc)}",
                           hint="the file may be damaged: fetch or export it again") from None
    if len(model.inputs) != 1 or len(model.outputs) < 1:
        raise RestoreError(f"{entry.id}: {path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                           "expected one image input and a class output")
    return core, model, _ends(entry, path, model)


def _ends(entry: Entry, path: Path, model: Any) -> Ends:
    types = (_dtype(model.inputs[0]), _dtype(model.outputs[0]))
    if path.suffix == ".xml":
        ends = Ends.from_metadata(str(model.get_rt_info(RT_INFO_PATH).astype(str))
                                  if model.has_rt_info(RT_INFO_PATH) else None, str(path))
    elif path.suffix == ".onnx":
        ends = Ends.from_metadata(_onnx_metadata(path), str(path))
    elif "uint8" in types or "int8" in types:  # a quantized .tflite states its own numbers
        from .tflite import load_tflite

        ends = Ends.of_tflite(load_tflite(entry, path, threads=1))
    else:
        ends = Ends()
    check_integer_ends(ends, types[0], types[1], str(path))
    return ends


def _onnx_metadata(path: Path) -> str | None:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "reading an ONNX file's metadata for OpenVINO", extra="openvino") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise RestoreError(f"{path}: not a readable ONNX file: {_first_line(exc)}", hint="export it again") from None
    return next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)


class OpenVINOModel(RestoredModel):
    """An OpenVINO compiled model behind the common float interface."""

    runtime = "openvino"

    def __init__(self, entry: Entry, source: Path, core: Any, model: Any, ends: Ends, *, threads: int | None,
                 device: str, precision: str, streams: int = 1):
        super().__init__(entry, source)
        self.format = _FORMAT_OF_SUFFIX.get(Path(source).suffix, "openvino")
        self.core, self.model, self.ends = core, model, ends
        self.device, self.requested_precision = device, precision
        shape = [d.get_length() if d.is_static else -1 for d in model.inputs[0].get_partial_shape()]
        check_input_shape(entry, source, shape, "OpenVINO")
        self._batch = shape[0] if shape[0] > 0 else None
        config = {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": str(streams)}
        if streams == 1:
            config["PERFORMANCE_HINT"] = "LATENCY"
        if threads is not None or streams > 1:
            config["INFERENCE_NUM_THREADS"] = str((threads or 1) * streams)
        try:
            from .._util.runtime_logs import native_stderr_hidden

            with native_stderr_hidden():
                self.compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise RestoreError(f"{entry.id}: OpenVINO cannot compile {source} for {device} at {precision}: "
                               f"{_first_line(exc)}", hint="try --precision f32, or the CPU device") from None
        self.streams = int(self.compiled.get_property("NUM_STREAMS")) or 1
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS")) // self.streams or threads
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: f32, bf16, f16
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self._request = self.compiled.create_infer_request()

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return run_in_chunks(batch, self._batch, self._invoke)

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        out = self._request.infer({0: self.ends.feed(chunk)})[self.compiled.outputs[0]]
        out = self.ends.read(out)
        return out.reshape(out.shape[0], -1)

    def copy(self) -> "OpenVINOModel":
        """A copy to run other images side by side: another request on this compiled model when
        it was compiled for several streams, else a one-thread compile of its own.

        One compile for N streams, not N one-thread compiles: separate compiled models appear to
        pin their threads to the same core (v2 1.0_224 uint8 inside eval on 2 CPUs, bench_eval.py
        --runtime openvino: 81 images/s that way, 128-142 with one 2-stream compile), and each
        compile costs start-up."""
        if self.streams > 1:
            sibling = _copy.copy(self)
            sibling._request = self.compiled.create_infer_request()
            return sibling
        return OpenVINOModel(self.entry, self.source, self.core, self.model, self.ends, threads=1,
                             device=self.device, precision=self.requested_precision)

    def _summary_extra(self) -> dict[str, Any]:
        ov = openvino_module()
        return {"input_dtype": _dtype(self.model.inputs[0]), "output_dtype": _dtype(self.model.outputs[0]),
                "input_quantization": summary_of(self.ends.input), "output_quantization": summary_of(self.ends.output),
                "batch": self._batch or "dynamic", "threads": self.threads, "streams": self.streams,
                "device": self.device,
                "precision": self.precision, "runtime_version": ov.__version__}

    def save_ir(self, xml: Path) -> Path:
        """Write the model as OpenVINO IR (``xml`` and its ``.bin``), f32 weights, ends recorded."""
        ov = openvino_module()
        model = self.model.clone()
        model.set_rt_info(self.ends.to_metadata(), RT_INFO_PATH)
        ov.save_model(model, str(xml), compress_to_fp16=False)  # f16 weights would change the answers
        return Path(xml)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines()
             if line.strip() and not line.startswith(("Exception from", "Check ", "FrontEnd API failed"))]
    return (lines[0] if lines else type(exc).__name__)[:300]


def load_openvino(entry: Entry, path: Path, *, threads: int | None = None, device: str | None = None,
                  precision: str | None = None, streams: int | None = None) -> OpenVINOModel:
    """Read ``path`` (.tflite, .onnx or IR .xml) with OpenVINO and compile it; ``streams`` > 1
    compiles it for that many requests side by side (``threads`` each), which ``copy()`` hands out."""
    for name, value in (("threads", threads), ("streams", streams)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}", params=(name,))
    precision = precision or PRECISIONS[0]
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use one of: {', '.join(PRECISIONS)}",
                         params=("precision",))
    device = device or DEFAULT_DEVICE
    core, model, ends = read_model(entry, path)
    available = core.available_devices
    if device not in available:
        raise UsageError(f"OpenVINO has no device {device!r} on this machine (openvino_device)",
                         hint=f"use one of: {', '.join(available)}", params=("openvino_device",))
    return OpenVINOModel(entry, Path(path), core, model, ends, threads=threads, device=device, precision=precision,
                         streams=streams or 1)
