"""Rewrite an upstream .tflite so it serves like every other export: ``serving_default``,
``images`` [N, H, W, 3] -> ``probabilities``, any N when the graph allows it.

Upstream MobileNet files fix the batch at 1 twice: the input's shape and a Reshape whose
``new_shape`` constant is ``[1, classes]`` (the SpatialSqueeze before the softmax). Both are
edited with TensorFlow's own flatbuffer object API (``tensorflow.lite.tools.flatbuffer_utils``),
never by patching bytes, and the result is run once with LiteRT at batch 2 before it is trusted.
A model that cannot be made dynamic still gets the signature and keeps batch 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


@dataclass
class SignedFlatbuffer:
    data: bytes
    dynamic_batch: bool


def _modules():
    from ..errors import MissingDependencyError
    from .._util.runtime_logs import import_tensorflow

    try:
        import_tensorflow()  # first, so its C++ log noise is turned down
    except ImportError:
        raise MissingDependencyError("tensorflow", "exporting .tflite files") from None
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils, schema


def _builtin_code(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))  # see the schema's comment


def _batch_one_to_dynamic(shape: list[int]) -> list[int] | None:
    """[1, 1001] -> [-1, 1001]; None when the shape does not fix a batch of 1 (or already has a -1)."""
    if len(shape) < 2 or shape[0] != 1 or -1 in shape:
        return None
    return [-1, *shape[1:]]


def _patch_reshapes(model: Any, graph: Any, schema: Any) -> int:
    """Turn every Reshape whose new shape starts with a constant batch of 1 into batch -1."""
    patched = 0
    users: dict[int, int] = {}
    for tensor in graph.tensors:
        users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    for op in graph.operators:
        if _builtin_code(model, op) != schema.BuiltinOperator.RESHAPE:
            continue
        options = op.builtinOptions if isinstance(op.builtinOptions, schema.ReshapeOptionsT) else None
        changed = False
        if len(op.inputs) > 1 and op.inputs[1] >= 0:
            shape_tensor = graph.tensors[op.inputs[1]]
            buffer = model.buffers[shape_tensor.buffer] if shape_tensor.buffer < len(model.buffers) else None
            data = None if buffer is None or buffer.data is None else np.asarray(buffer.data, np.uint8)
            if shape_tensor.type == schema.TensorType.INT32 and data is not None and data.size % 4 == 0:
                new = _batch_one_to_dynamic(data.view("<i4").tolist())
                if new is not None:
                    if users.get(shape_tensor.buffer, 0) > 1:  # shared constant: give this one its own copy
                        model.buffers.append(schema.BufferT())
                        shape_tensor.buffer = len(model.buffers) - 1
                    model.buffers[shape_tensor.buffer].data = np.asarray(new, "<i4").view(np.uint8)
                    changed = True
        if options is not None and options.newShape is not None:
            new = _batch_one_to_dynamic([int(d) for d in options.newShape])
            if new is not None:
                options.newShape = np.asarray(new, np.int32)
                changed = True
        if changed:
            out = graph.tensors[op.outputs[0]]
            out.shapeSignature = np.asarray([-1, *[int(d) for d in out.shape[1:]]], np.int32)
            patched += 1
    return patched


def _sign(source: bytes, *, dynamic: bool) -> bytes:
    flatbuffer_utils, schema = _modules()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(source))
    graph = model.subgraphs[0]
    image, probs = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    image.name, probs.name = INPUT_NAME, OUTPUT_NAME
    if dynamic:
        if _patch_reshapes(model, graph, schema) == 0:
            raise ValueError("no Reshape fixes the batch at 1")
        for tensor in (image, probs):
            tensor.shapeSignature = np.asarray([-1, *[int(d) for d in tensor.shape[1:]]], np.int32)
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE_KEY, 0
    signature.inputs = [_tensor_map(schema, INPUT_NAME, graph.inputs[0])]
    signature.outputs = [_tensor_map(schema, OUTPUT_NAME, graph.outputs[0])]
    model.signatureDefs = [signature]  # upstream files have none; any other would name old tensors
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _tensor_map(schema: Any, name: str, index: int) -> Any:
    mapping = schema.TensorMapT()
    mapping.name, mapping.tensorIndex = name, int(index)
    return mapping


def _serves_batch_of_two(data: bytes) -> bool:
    """Run the rewritten model at batch 2; True when it answers [2, classes]."""
    from ai_edge_litert.interpreter import Interpreter

    from .._util.runtime_logs import native_stderr_hidden

    try:
        with native_stderr_hidden():
            runner = Interpreter(model_content=data).get_signature_runner(SIGNATURE_KEY)
            detail = runner.get_input_details()[INPUT_NAME]
            shape = [2, *(int(d) for d in detail["shape"][1:])]
            out = runner(**{INPUT_NAME: np.zeros(shape, detail["dtype"])})[OUTPUT_NAME]
    except (ValueError, RuntimeError, KeyError):
        return False
    return out.shape[0] == 2


def sign_flatbuffer(source: bytes, *, num_inputs: int, num_outputs: int) -> SignedFlatbuffer:
    """The ``serving_default`` form of a one-input .tflite; a dynamic batch when it verifiably works."""
    if num_inputs != 1 or num_outputs != 1:
        raise ValueError(f"{num_inputs} inputs and {num_outputs} outputs; expected one of each")
    try:
        data = _sign(source, dynamic=True)
        if _serves_batch_of_two(data):
            return SignedFlatbuffer(data, True)
    except ValueError:
        pass
    return SignedFlatbuffer(_sign(source, dynamic=False), False)
