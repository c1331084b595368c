"""The integer ends of a quantized model, for runtimes whose files do not say them.

A uint8 ``.tflite`` states its input and output quantization (scale, zero point), and LiteRT
reports it. The same model converted to ONNX, or read by OpenVINO, keeps the integer types
but not the numbers, so the converter writes them into the file it produces (ONNX
``metadata_props``, OpenVINO ``rt_info``, under ``METADATA_KEY``) and every runtime feeds
and reads the model through :class:`Ends`: callers keep passing floats in [-1, 1].
The metadata is read as untrusted: anything but two finite positive scales and integer
zero points in the dtype's range is refused by name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RestoreError

METADATA_KEY = "mobilenet_zoo.ends"
_INTEGER_TYPES = ("uint8", "int8")


@dataclass(frozen=True)
class Quantization:
    dtype: str  # uint8 or int8
    scale: float
    zero_point: int

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


def summary_of(q: Quantization | None) -> dict[str, float] | None:
    """What `restore` shows for an end: its scale and zero point, as LiteRT's summary does."""
    return None if q is None else {"scale": q.scale, "zero_point": q.zero_point}


@dataclass(frozen=True)
class Ends:
    """How floats become the model's input and its output becomes floats (None: float end)."""

    input: Quantization | None = None
    output: Quantization | None = None

    @property
    def is_float(self) -> bool:
        return self.input is None and self.output is None

    def feed(self, batch: np.ndarray) -> np.ndarray:
        if self.input is None:
            return np.ascontiguousarray(batch, dtype=np.float32)
        from .tflite import quantize

        q = self.input
        return quantize(batch, q.scale, q.zero_point, np.dtype(q.dtype))

    def read(self, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out)
        if self.output is None or not np.issubdtype(out.dtype, np.integer):
            return out.astype(np.float32, copy=False)
        from .tflite import dequantize

        return dequantize(out, self.output.scale, self.output.zero_point)

    def to_metadata(self) -> str:
        return json.dumps({"input": self.input.to_json() if self.input else None,
                           "output": self.output.to_json() if self.output else None}, sort_keys=True)

    @classmethod
    def from_metadata(cls, text: str | None, where: str) -> "Ends":
        """The ends a converted file states; ``where`` names the file in the error."""
        if text is None:
            return cls()
        try:
            data = json.loads(text) if len(text) < 4096 else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RestoreError(f"{where}: its {METADATA_KEY} metadata is not a JSON object",
                               hint="export the model again with `mobilenet-zoo export --to onnx|openvino`")
        return cls(_quantization(data.get("input"), where, "input"), _quantization(data.get("output"), where, "output"))

    @classmethod
    def of_tflite(cls, model: Any) -> "Ends":
        """The ends a LiteRT-loaded ``TFLiteModel`` reports."""
        return cls(_from_detail(model._input), _from_detail(model._output))


def _from_detail(detail: dict) -> Quantization | None:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(dtype, np.integer) or not scale:
        return None
    return Quantization(dtype.name, float(scale), int(zero_point))


def _quantization(value: Any, where: str, end: str) -> Quantization | None:
    if value is None:
        return None
    bad = RestoreError(f"{where}: its {METADATA_KEY} metadata has no valid {end} quantization",
                       hint="export the model again with `mobilenet-zoo export --to onnx|openvino`")
    if not isinstance(value, dict) or value.get("dtype") not in _INTEGER_TYPES:
        raise bad
    scale, zero_point = value.get("scale"), value.get("zero_point")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise bad
    info = np.iinfo(value["dtype"])
    if isinstance(zero_point, bool) or not isinstance(zero_point, int) or not info.min <= zero_point <= info.max:
        raise bad
    return Quantization(value["dtype"], float(scale), zero_point)


def check_integer_ends(ends: Ends, input_dtype: str, output_dtype: str, where: str) -> None:
    """A model with integer ends needs their quantization; one with float ends must not claim any."""
    for end, dtype, q in (("input", input_dtype, ends.input), ("output", output_dtype, ends.output)):
        if dtype in _INTEGER_TYPES and (q is None or q.dtype != dtype):
            raise RestoreError(f"{where}: its {end} is {dtype} and the file does not say its quantization",
                               hint="convert the .tflite with `mobilenet-zoo export --to onnx|openvino`, "
                                    "which records it, or run the .tflite itself")
        if dtype not in _INTEGER_TYPES and q is not None:
            raise RestoreError(f"{where}: its {end} is {dtype}, but its metadata says {q.dtype}",
                               hint="export the model again")
