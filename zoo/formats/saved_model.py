"""The one SavedModel writer: every Keras model the tool exports gets the same serving signature.

    write_saved_model(keras_model, Path("out/saved_model"), num_classes=1001)

Signature ``serving_default``: ``images`` (float32 [N, H, W, 3] in [-1, 1], any N) ->
``probabilities`` ([N, classes]). `restore --export`, `export --to saved_model`, `finetune`'s
``saved_model/`` and the TFLite conversions all read or write this shape (frozen graphs, which
are not Keras models, write the same signature in ``zoo.formats.frozen``). A 1000-class head of
a 1001-label model gets its background column (index 0) in the signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def check_export_dir(model_id: str, directory: Path) -> Path:
    """``directory`` if a SavedModel may be written there: new, or an empty folder."""
    from ..errors import UsageError

    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{model_id}: export directory {directory} is not empty",
                           hint="choose a new or empty directory")
    return directory


def write_saved_model(keras_model: Any, directory: Path, *, num_classes: int | None = None,
                      output: str = OUTPUT_NAME) -> Path:
    """Write ``keras_model`` as a SavedModel at ``directory`` (which must not hold anything).

    ``num_classes``: the classes the signature must answer (a head one short gets index 0 added).
    ``output``: the output's name (``"features"`` for a backbone converted on its own).
    """
    from keras.export import ExportArchive

    from .keras_models import import_tensorflow

    tf = import_tensorflow()
    directory = Path(directory)
    shape = [None, *(int(d) for d in keras_model.input_shape[1:])]

    def serve(images):
        result = keras_model(images, training=False)
        if num_classes is not None and result.shape[-1] == num_classes - 1:
            result = tf.pad(result, [[0, 0], [1, 0]])
        return {output: result}

    archive = ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint(SIGNATURE, serve, input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    archive.write_out(str(directory), verbose=False)
    return directory
