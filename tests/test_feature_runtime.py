"""The frozen backbone's feature pass on LiteRT (``zoo.training.runtime_backbone``).

The real thing: the real-weight v1 0.25_128 backbone (``real_weights``) converted to a float
.tflite and run by LiteRT, against the same Keras backbone, on real digit scans. The fallback
is exercised with a LiteRT answer made wrong on purpose (off by a little, NaN, the wrong shape)
and with a conversion that fails: each must leave the pass on Keras and say why.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf

from zoo.catalog import load_catalog  # noqa: E402
from zoo.errors import UsageError  # noqa: E402
from zoo.training import finetuning  # noqa: E402
from zoo.training.runtime_backbone import MAX_FEATURE_DIFF, CheckedBackbone, keras_reason  # noqa: E402

from .test_finetune import BASE, checkpoint, few_digits  # noqa: E402,F401  (fixtures)


# ----------------------------------------------------------------------------- the decision
def test_auto_keeps_short_passes_on_keras_and_converts_long_ones():
    assert "short pass" in keras_reason("auto", 14, 3000, fake_quant=False)  # v1 0.25_128 over 3000 images
    assert keras_reason("auto", 569, 3000, fake_quant=False) is None         # v1 1.0_224: worth converting
    assert keras_reason("auto", None, 10, fake_quant=False) is None          # size unknown: try LiteRT
    assert keras_reason("litert", 14, 10, fake_quant=False) is None          # asked for: always tried
    assert "asked for" in keras_reason("keras", 569, 10**6, fake_quant=False)
    assert "fake-quant" in keras_reason("litert", 569, 10**6, fake_quant=True)  # QAT: int8 is its conversion


# ----------------------------------------------------------------------------- the check
@pytest.fixture(scope="module")
def backbone_and_images(checkpoint, few_digits):  # noqa: F811
    from zoo.training.inputs import image_dataset, scan_image_folder

    base = finetuning._resolve_base(BASE, checkpoint, load_catalog(), None)
    backbone = finetuning._backbone_and_head(base, ["a", "b"])[0]
    images = next(iter(image_dataset(scan_image_folder(few_digits), base.entry.input_size[:2], batch=8)))[0]
    return base, backbone, images.numpy()


def _checked(backbone, convert):
    return CheckedBackbone(finetuning.keras_features(tf, backbone), convert)


def test_litert_gives_the_keras_features_and_answers_from_the_first_batch(backbone_and_images, tmp_path):
    from zoo.training.runtime_backbone import float_backbone

    base, backbone, images = backbone_and_images
    litert = float_backbone(backbone, base.entry, tmp_path)
    checked = _checked(backbone, lambda: litert)
    first = checked(images)
    record = checked.record()
    assert record["runtime"] == "litert" and record["why_keras"] is None
    assert 0 < record["max_abs_feature_diff"] <= MAX_FEATURE_DIFF
    keras = backbone(images, training=False).numpy()
    assert first.any() and np.abs(first - keras).max() <= MAX_FEATURE_DIFF
    # every row from one runtime: what a resumed pass recomputes is what the first run wrote
    np.testing.assert_array_equal(first, litert(images))
    np.testing.assert_array_equal(checked(images[:3]), litert(images[:3]))


@pytest.mark.parametrize("lie, why", [
    (lambda f: f + 10 * MAX_FEATURE_DIFF, "differ from Keras' by up to"),
    (lambda f: f * np.nan, "differ from Keras' by up to nan"),
    (lambda f: f[:, :-1], "have shape"),
], ids=["off", "nan", "shape"])
def test_a_litert_answer_that_disagrees_leaves_the_pass_on_keras(backbone_and_images, lie, why):
    _, backbone, images = backbone_and_images
    keras = backbone(images, training=False).numpy()
    checked = _checked(backbone, lambda: (lambda x: lie(backbone(x, training=False).numpy())))
    np.testing.assert_array_equal(checked(images), keras)
    np.testing.assert_array_equal(checked(images[:2]), keras[:2])  # and stays there
    record = checked.record()
    assert record["runtime"] == "keras" and why in record["why_keras"]


def test_a_conversion_that_fails_leaves_the_pass_on_keras_and_names_the_error(backbone_and_images):
    _, backbone, images = backbone_and_images

    def convert():
        raise RuntimeError("converter refused the graph")

    checked = _checked(backbone, convert)
    np.testing.assert_array_equal(checked(images), backbone(images, training=False).numpy())
    assert "RuntimeError: converter refused the graph" in checked.record()["why_keras"]


def test_nothing_computed_records_no_runtime(backbone_and_images):
    _, backbone, _ = backbone_and_images
    converted = []
    checked = _checked(backbone, lambda: converted.append(1))
    assert checked.record() == {"runtime": None, "max_abs_feature_diff": None, "why_keras": None}
    assert not converted  # a pass found on disk converts nothing


# ----------------------------------------------------------------------------- through finetune
def test_finetune_on_litert_learns_what_it_learns_on_keras(checkpoint, few_digits, tmp_path, monkeypatch):  # noqa: F811
    """The same run on both runtimes: the same held-out top-1, and on LiteRT the Keras backbone
    only sees the one batch that checks it (counted)."""
    keras_images = []
    real = finetuning.keras_features

    def counting(tf_module, backbone):
        run = real(tf_module, backbone)
        return lambda images: (keras_images.append(len(images)), run(images))[1]

    monkeypatch.setattr(finetuning, "keras_features", counting)
    results = {}
    for runtime in ("keras", "litert"):
        keras_images.clear()
        out = tmp_path / runtime
        results[runtime] = finetune_result = finetuning.finetune(
            BASE, few_digits, out, checkpoint=checkpoint, epochs=2, learning_rate=1e-2, catalog=load_catalog(),
            progress=False, cache_dir=tmp_path / f"cache_{runtime}", feature_runtime=runtime)
        (record,) = json.loads((out / "finetune.json").read_text())["training"]["feature_extraction"]
        assert record["runtime"] == runtime
        rows = finetune_result.train_images * (1 + finetuning.AUGMENTED_VIEWS) + finetune_result.val_images
        assert record["computed"] == rows
        assert sum(keras_images) == (rows if runtime == "keras" else 32)  # one checking batch
    assert record["max_abs_feature_diff"] <= MAX_FEATURE_DIFF
    one_image = 100.0 / results["keras"].val_images
    assert abs(results["litert"].val_top1 - results["keras"].val_top1) <= one_image + 1e-9
    assert results["litert"].val_top1 > 50.0


def test_an_unknown_feature_runtime_is_refused_by_name(few_digits, tmp_path):  # noqa: F811
    with pytest.raises(UsageError) as refused:
        finetuning.finetune(BASE, few_digits, tmp_path / "out", feature_runtime="gpu", catalog=load_catalog())
    assert refused.value.params == ("feature_runtime",) and "litert" in refused.value.hint
    assert not (tmp_path / "out").exists()
