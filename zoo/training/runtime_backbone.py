"""The frozen backbone's feature pass on LiteRT, when LiteRT gives the Keras backbone's features.

    features = CheckedBackbone(keras_run, lambda: float_backbone(backbone, entry, workdir))
    rows = features(images)            # float32 [N, features]
    features.record()                  # {"runtime": "litert", "max_abs_feature_diff": 3e-06, ...}

Why: the one pass of the frozen backbone over the images is most of a head-only run's time,
and LiteRT's CPU kernels (XNNPACK) run MobileNet faster than TensorFlow does on the same
threads (``benchmarks/bench_finetune.py`` measures both). The backbone is converted once
per phase to a float ``.tflite`` with a dynamic batch.

Checked, never trusted: the first batch goes through both; when the largest feature
difference is above ``MAX_FEATURE_DIFF`` (or LiteRT is missing, or the conversion fails) the
pass stays on Keras and ``record()`` says why. When the check passes, every row, the first
batch's included, comes from LiteRT, so a resumed pass fills its file as an uninterrupted
one does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger("zoo.training")

# auto: LiteRT when the pass would take Keras longer than CONVERSION_PAYS_AFTER_S, estimated from
# the backbone's multiply-adds at KERAS_MACS_PER_S. Measured by benchmarks/bench_finetune.py
# --feature-runtimes on 2 CPUs: Keras ran v1 1.0_224 at about 100 G multiply-adds/s; LiteRT ran
# it about 1.7x faster; converting cost 3-4 s whatever the size. So LiteRT repays its conversion
# only after about 10 s of Keras work; 15 s leaves a margin for noise.
KERAS_MACS_PER_S = 100e9
CONVERSION_PAYS_AFTER_S = 15.0
# ReLU6 features lie in [0, 6]; two float32 implementations of the same network differ by
# about 1e-5 there (summation order). A thousand times that is a different network.
MAX_FEATURE_DIFF = 1e-3


def keras_reason(requested: str, macs_m: float | None, rows: int, fake_quant: bool) -> str | None:
    """Why the pass stays on Keras (None: try LiteRT). Decided from the run's options and sizes
    alone, never from timings, so a resumed run decides as the first did."""
    if requested == "keras":
        return "asked for (feature_runtime='keras')"
    if fake_quant:
        return "a fake-quant backbone (QAT) converts to an int8 file, not a float one"
    if requested == "auto" and macs_m is not None:
        estimate = rows * macs_m * 1e6 / KERAS_MACS_PER_S
        if estimate < CONVERSION_PAYS_AFTER_S:
            return (f"a short pass ({rows} images, about {estimate:.1f} s on Keras): converting the backbone "
                    f"for LiteRT would cost more than it saves")
    return None


def converted_backbone(backbone: Any, entry: Any, directory: Path, name: str,
                       convert: Callable[[Path, Path], Path], threads: int | None = None
                       ) -> Callable[[np.ndarray], np.ndarray]:
    """A TFLite copy of ``backbone`` on LiteRT: float images [N, H, W, 3] -> features [N, F].

    The one way a backbone becomes a file for a feature pass (float here, int8 in
    ``zoo.training.quantized_features``): cloned outside any ``tf.distribute`` scope (plain
    weight arrays), written as the SavedModel ``directory/<name>_saved_model``, and turned into
    ``directory/<name>.tflite`` by ``convert(saved_model, tflite_path)``. A quantized file is fed
    and read through its own quantization, so the features come back as float32.
    """
    from ..formats.keras_models import import_keras
    from ..formats.saved_model import write_saved_model
    from ..formats.tflite import load_tflite

    keras = import_keras()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    copy = keras.models.clone_model(backbone)
    copy.set_weights(backbone.get_weights())
    saved = write_saved_model(copy, directory / f"{name}_saved_model", output="features")
    model = load_tflite(entry, convert(saved, directory / f"{name}.tflite"), threads=threads)
    return lambda images: model._predict(np.asarray(images, np.float32))  # raw outputs: features, not classes


def float_backbone(backbone: Any, entry: Any, directory: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A float TFLite copy of ``backbone`` (``zoo.training.export.write_tflite``), on every usable CPU."""
    from ..run.evaluation import usable_cpus
    from .export import write_tflite

    return converted_backbone(backbone, entry, directory, "float_backbone", write_tflite, threads=usable_cpus())


class CheckedBackbone:
    """Features from LiteRT once its first batch matched Keras', else from Keras (see the module).

    ``keras_run``: images -> features through the Keras backbone. ``convert``: makes the LiteRT
    function, called at most once, and only when a batch is to be computed (a pass found on
    disk converts nothing).
    """

    def __init__(self, keras_run: Callable[[Any], np.ndarray],
                 convert: Callable[[], Callable[[np.ndarray], np.ndarray]], *, keras_because: str | None = None):
        self.keras_run, self.convert = keras_run, convert
        self.litert: Callable[[np.ndarray], np.ndarray] | None = None
        self.checked = False
        self.max_abs_diff: float | None = None
        self.why_keras = keras_because  # set: Keras by choice, nothing is converted

    def __call__(self, images: Any) -> np.ndarray:
        if self.litert is not None:
            return self.litert(np.asarray(images))
        reference = np.asarray(self.keras_run(images))
        if self.checked or self.why_keras is not None:
            self.checked = True
            return reference
        self.checked = True
        try:
            candidate = self.convert()
            answer = np.asarray(candidate(np.asarray(images)))
        except Exception as exc:  # noqa: BLE001 - no LiteRT, or a graph its converter refuses: Keras does it
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            self.why_keras = f"LiteRT could not run the backbone ({type(exc).__name__}: {first_line})"
            log.info("feature pass on Keras: %s", self.why_keras)
            return reference
        if answer.shape != reference.shape:
            self.why_keras = f"LiteRT's features have shape {answer.shape}, Keras' {reference.shape}"
        else:
            self.max_abs_diff = float(np.abs(answer - reference).max()) if answer.size else 0.0
            if not self.max_abs_diff <= MAX_FEATURE_DIFF:  # NaN fails too
                self.why_keras = (f"LiteRT's features differ from Keras' by up to {self.max_abs_diff:.3g} "
                                  f"(more than {MAX_FEATURE_DIFF:g})")
        if self.why_keras is not None:
            log.info("feature pass on Keras: %s", self.why_keras)
            return reference
        self.litert = candidate
        return answer

    def record(self) -> dict[str, Any]:
        """What finetune.json says about the runtime of the pass (nothing computed: ``runtime`` None)."""
        runtime = "litert" if self.litert is not None else ("keras" if self.checked else None)
        return {"runtime": runtime, "max_abs_feature_diff": self.max_abs_diff, "why_keras": self.why_keras}
