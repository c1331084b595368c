"""Run an upstream ``*_frozen.pb`` GraphDef with TensorFlow's v1 graph runtime.

The graph is imported whole into its own ``tf.Graph`` and run in a session of its
own, so the thread pools are per model (``threads``) instead of TensorFlow's global
ones. Input and output are the catalog's ``input_node`` / ``output_node``. Some
upstream graphs fix the batch at 1 in the placeholder: batches then run in chunks of
that size, the last chunk padded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..catalog.registry import Entry
from ..fetching.layout import spec_for_path
from ..errors import MissingDependencyError, RestoreError, UsageError
from .base import RestoredModel, run_in_chunks


def _tensorflow():
    from .._util.runtime_logs import import_tensorflow

    try:
        tf = import_tensorflow()
    except ImportError:
        raise MissingDependencyError("tensorflow", "running frozen graphs") from None
    return tf


class FrozenGraphModel(RestoredModel):
    """A frozen GraphDef in a private session behind the common float interface."""

    format = "frozen"

    def __init__(self, entry: Entry, source: Path, graph: Any, session: Any, input_tensor: Any,
                 output_tensor: Any, threads: int | None):
        super().__init__(entry, source)
        self.graph, self.session = graph, session
        self.input_tensor, self.output_tensor = input_tensor, output_tensor
        self.threads = threads
        dim = input_tensor.shape[0]
        self.fixed_batch: int | None = int(dim) if dim is not None else None

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return run_in_chunks(batch, self.fixed_batch, self._run)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        out = self.session.run(self.output_tensor, feed_dict={self.input_tensor: chunk})
        return np.asarray(out).reshape(chunk.shape[0], -1)

    def _summary_extra(self) -> dict[str, Any]:
        return {
            "input_tensor": self.input_tensor.name,
            "input_dtype": self.input_tensor.dtype.name,
            "output_tensor": self.output_tensor.name,
            "batch": self.fixed_batch if self.fixed_batch is not None else "dynamic",
            "threads": self.threads,
            "parameters": count_graph_weights(self.graph),
            "graph_nodes": len(self.graph.as_graph_def().node),
        }

    def export(self, directory: Path) -> Path:
        """A TF2-loadable SavedModel: `serving_default`, images [N,H,W,3] -> probabilities, any batch size."""
        tf = _tensorflow()
        from .saved_model import check_export_dir

        directory = check_export_dir(self.entry.id, directory)
        h, w, c = self.entry.input_size
        graph_def = self.graph.as_graph_def()
        source, target = self.input_tensor.name, self.output_tensor.name
        graph = tf.Graph()
        with graph.as_default():
            images = tf.compat.v1.placeholder(tf.float32, [None, h, w, c], name="images")
            if self.fixed_batch is None:  # the graph takes any batch: feed it straight through
                (out,) = tf.compat.v1.import_graph_def(graph_def, input_map={source: images},
                                                       return_elements=[target], name="model")
                probs = tf.reshape(out, [tf.shape(images)[0], -1])
            else:  # a batch baked into the graph (upstream's is 1): run it image by image
                def one(image):
                    chunk = tf.tile(image[None], [self.fixed_batch, 1, 1, 1])
                    (out,) = tf.compat.v1.import_graph_def(graph_def, input_map={source: chunk},
                                                           return_elements=[target], name="model")
                    return tf.reshape(out, [self.fixed_batch, -1])[0]

                probs = tf.map_fn(one, images, fn_output_signature=tf.float32)
            if self.entry.num_classes == 1001 and probs.shape[-1] == 1000:
                probs = tf.pad(probs, [[0, 0], [1, 0]])
            probs = tf.identity(probs, name="probabilities")
            with tf.compat.v1.Session(graph=graph) as session:
                builder = tf.compat.v1.saved_model.Builder(str(directory))
                signature = tf.compat.v1.saved_model.predict_signature_def(
                    inputs={"images": images}, outputs={"probabilities": probs})
                builder.add_meta_graph_and_variables(
                    session, [tf.compat.v1.saved_model.SERVING],
                    signature_def_map={"serving_default": signature}, strip_default_attrs=True)
                builder.save()
        return directory

    def close(self) -> None:
        self.session.close()


def count_graph_weights(graph: Any) -> int:
    """Elements of floating-point constants: the weights once batch norm is folded in."""
    total = 0
    for node in graph.as_graph_def().node:
        if node.op != "Const":
            continue
        value = node.attr["value"].tensor
        if value.dtype not in (1, 2, 19):  # DT_FLOAT, DT_DOUBLE, DT_HALF
            continue
        total += int(np.prod([d.size for d in value.tensor_shape.dim])) if value.tensor_shape.dim else 1
    return total


# What the graph's own input and output are when the catalog's node names are not in it
# (upstream's sources disagree for some tarballs): its one placeholder, its one softmax.
_OWN_NODE_TYPE = {"input": "Placeholder", "output": "Softmax"}


def _tensor(graph: Any, node: str, role: str, entry: Entry, path: Path) -> Any:
    """The catalog's ``node``; else the graph's only node of its kind (the file wins, said once)."""
    name = node if ":" in node else node + ":0"
    try:
        return graph.get_tensor_by_name(name)
    except (KeyError, ValueError):
        pass
    own = [op for op in graph.get_operations() if op.type == _OWN_NODE_TYPE[role]]
    if len(own) == 1:
        from .. import notices

        notices.warn(f"{entry.id}: {path.name} has no {role} node {node!r} (the catalog's); "
                     f"using the graph's own {own[0].name!r}")
        return own[0].outputs[0]
    names = ", ".join(op.name for op in own[:5]) or "none"
    raise RestoreError(f"{entry.id}: {path.name} has no {role} tensor {name!r}",
                       hint=f"{_OWN_NODE_TYPE[role]} nodes in the graph: {names}; pass a graph with the catalog's "
                            f"{role}_node, or fix the catalog") from None


def load_frozen_graph(entry: Entry, path: Path, *, threads: int | None = None) -> FrozenGraphModel:
    """Import ``path`` and wire its catalog input/output nodes to the common interface."""
    tf = _tensorflow()
    from google.protobuf.message import DecodeError

    path = Path(path)
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}", params=("threads",))
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (OSError, DecodeError) as exc:
        raise RestoreError(f"{entry.id}: cannot read frozen graph {path}: {exc}",
                           hint=f"`mobilenet-zoo verify --repair {spec_for_path(entry, path)}` re-fetches damaged files") from None
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise RestoreError(f"{entry.id}: TensorFlow cannot import {path.name}: {first}") from None
    input_tensor = _tensor(graph, entry.input_node, "input", entry, path)
    output_tensor = _tensor(graph, entry.output_node, "output", entry, path)
    shape = input_tensor.shape
    h, w, c = entry.input_size
    if shape.rank is not None and (shape.rank != 4 or [shape[1], shape[2], shape[3]] != [h, w, c]):
        raise RestoreError(f"{entry.id}: {path.name} takes input of shape {shape.as_list()}, "
                           f"the catalog says [N, {h}, {w}, {c}]", hint="is this the right file for this model?")
    config = tf.compat.v1.ConfigProto()
    if threads is not None:
        config.intra_op_parallelism_threads = threads
        config.inter_op_parallelism_threads = threads
    session = tf.compat.v1.Session(graph=graph, config=config)
    return FrozenGraphModel(entry, path, graph, session, input_tensor, output_tensor, threads)
