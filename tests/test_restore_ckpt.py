"""Restoring TF-slim checkpoints into Keras (``zoo.formats.ckpt``).

The reference is the TF1 graph each tiny checkpoint came from (``slim_builders``): the
Keras model must give the same probabilities on the same images. Tolerance: atol 2e-5 on
probabilities; float32 rounding through 30-50 layers of random nets measures up to 1e-5
between TF1's fused ops and Keras', while a wrong weight or the other weight set moves
them by more than 1e-2.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf

from zoo.catalog.registry import default_catalog_path, load_catalog
from zoo.errors import RestoreError, UsageError
from zoo.formats import restore, restore_file
from zoo.formats.ckpt import CheckpointModel, RestoreWarning, restore_checkpoint
from zoo.formats.keras_models import build_keras_model

from . import slim_builders  # noqa: E402

# float32 through 30-50 layers; the compiled predict graph differs from the TF1 graph by up to ~4e-5.
ATOL = 5e-5
V3_VARIANTS = ["large", "small", "large_minimalistic", "small_minimalistic"]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def v1(tmp_path_factory):
    return slim_builders.write_v1_model(tmp_path_factory.mktemp("v1"))


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    return slim_builders.write_v2_model(tmp_path_factory.mktemp("v2"))


@pytest.fixture(scope="module")
def v3_models(tmp_path_factory):
    return {variant: slim_builders.write_v3_model(tmp_path_factory.mktemp(f"v3_{variant}"), variant=variant)
            for variant in V3_VARIANTS}


@pytest.fixture(scope="module")
def edgetpu(tmp_path_factory):
    return slim_builders.write_edgetpu_model(tmp_path_factory.mktemp("edgetpu"))


@pytest.fixture(params=["v1", "v2"] + [f"v3_{v}" for v in V3_VARIANTS] + ["edgetpu"])
def built(request):
    """Every tiny model in turn (each is built once per module)."""
    if request.param.startswith("v3_"):
        return request.getfixturevalue("v3_models")[request.param[3:]]
    return request.getfixturevalue(request.param)


def packaged_catalog():
    """The catalog shipped with the package (never an override left in the environment)."""
    return load_catalog(default_catalog_path(), with_profile=False)


# ----------------------------------------------------------------------------- numerics
def test_default_weights_reproduce_the_source_graph(built):
    model = restore_checkpoint(built.entry, built.checkpoint)
    probs = model(built.images)
    assert probs.shape == (len(built.images), 1001) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, built.probabilities, rtol=0, atol=ATOL)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("weights", ["ema", "ema-trainable", "raw"])
def test_weight_sets_give_their_own_outputs(built, weights):
    v3 = built.entry.family == "v3"  # ema/ and pristine/ folders: no trainable-only set
    if v3 and weights == "ema-trainable":
        with pytest.raises(RestoreError, match="ema/ \\+ pristine/"):
            restore_checkpoint(built.entry, built.checkpoint, weights=weights)
        return
    model = restore_checkpoint(built.entry, built.checkpoint, weights=weights)
    probs = model(built.images)
    wanted = {"raw": built.raw_probabilities, "ema-trainable": built.ema_probabilities,
              "ema": built.ema_probabilities if v3 else built.ema_all_probabilities}[weights]
    np.testing.assert_allclose(probs, wanted, rtol=0, atol=ATOL)
    for other in (built.raw_probabilities, built.ema_probabilities, built.ema_all_probabilities):
        if other is not None and other is not wanted and not (v3 and weights == "ema"):
            assert np.abs(probs - other).max() > 1e-2  # the sets really differ
    assert model.summary()["weights"] == weights


def test_default_weights_are_the_set_the_frozen_graph_was_made_from(v1, v2, v3_models):
    """The fixtures freeze v1 with raw weights and v2 the notebook's way (ema-trainable)."""
    for built, expected in ((v1, "raw"), (v2, "ema-trainable"), (v3_models["large"], "ema")):
        summary = restore_checkpoint(built.entry, built.checkpoint).summary()
        assert summary["weights"] == expected
        assert any(f"weights {expected}: the set that reproduces {built.frozen_graph.name}" in note
                   for note in summary["notes"]), summary["notes"]
    assert "/ema/" in restore_checkpoint(v3_models["large"].entry, v3_models["large"].checkpoint).summary()["source"]


def test_upstream_default_weight_set_per_family_without_a_frozen_graph(v1, v2, v3_models, edgetpu):
    """eval_image_classifier.py and the tf1 loaders restore every average, BN statistics included."""
    for built in (v1, v2, edgetpu):
        model = restore_checkpoint(built.entry, built.checkpoint, reference=False)
        assert model.summary()["weights"] == "ema"
        np.testing.assert_allclose(model(built.images), built.ema_all_probabilities, rtol=0, atol=ATOL)
    large = v3_models["large"]
    summary = restore_checkpoint(large.entry, large.checkpoint, reference=False).summary()
    assert summary["weights"] == "ema" and "/ema/" in summary["source"]


def test_one_image_and_a_batch_agree(v2):
    model = restore_checkpoint(v2.entry, v2.checkpoint)
    single = model(v2.images[1])  # [H,W,3] is taken as a batch of one
    np.testing.assert_allclose(single[0], model(v2.images)[1], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- summary
def test_summary_counts_and_skips(v1, v2):
    model = restore_checkpoint(v1.entry, v1.checkpoint)
    assert isinstance(model, CheckpointModel) and model.format == "ckpt"
    assert model.input_size == (32, 32, 3)
    summary = model.summary()
    assert summary["input_shape"] == [None, 32, 32, 3] and summary["input_range"] == [-1.0, 1.0]
    assert summary["output_shape"] == [None, 1001]
    assert summary["parameters"] == v1.param_count == model.keras_model.count_params()
    assert summary["catalog_params_m"] == v1.entry.params_m
    assert sorted(summary["used"]) == sorted(v1.model_variables)
    skipped = summary["skipped"]
    assert skipped["global_step"] == ["global_step"]
    assert "MobilenetV1/Conv2d_0/weights/RMSProp_1" in skipped["optimizer_slot"]
    assert "MobilenetV1/Conv2d_0/weights/ExponentialMovingAverage" in skipped["ema_shadow"]
    assert len(skipped["ema_shadow"]) == len(v1.model_variables)

    # EMA as upstream restores it: shadows for trainable variables, plain BN statistics
    ema = restore_checkpoint(v2.entry, v2.checkpoint).summary()
    shadows = {name + "/ExponentialMovingAverage" for name in v2.trainable_variables}
    statistics = set(v2.model_variables) - set(v2.trainable_variables)
    assert set(ema["used"]) == shadows | statistics
    assert sorted(ema["skipped"]["raw_value"]) == sorted(v2.trainable_variables)
    assert "MobilenetV2/Conv/BatchNorm/moving_mean/ExponentialMovingAverage" in ema["skipped"]["ema_shadow"]


def test_parameter_count_matches_the_checkpoint(built):
    model = restore_checkpoint(built.entry, built.checkpoint)
    assert model.summary()["parameters"] == built.param_count == model.keras_model.count_params()


def test_quantized_checkpoint_restores_as_float_when_asked(tmp_path):
    built = slim_builders.write_v1_model(tmp_path, quantized=True)
    model = restore_checkpoint(built.entry, built.checkpoint, fake_quant=False)
    # no comparison with a fake-quant frozen graph: the family default, every average
    np.testing.assert_allclose(model(built.images), built.ema_all_probabilities, rtol=0, atol=ATOL)
    summary = model.summary()
    assert "MobilenetV1/Conv2d_0/act_quant/min" in summary["skipped"]["fake_quant_range"]
    assert any(".tflite file is the deployable quantized form" in note for note in summary["notes"])
    # by default the same checkpoint restores as its fake-quant network (tests/test_fake_quant.py),
    # which this builder's float frozen graph cannot confirm: a warning says so
    with pytest.warns(RestoreWarning, match="no weight set of the checkpoint reproduces"):
        default = restore_checkpoint(built.entry, built.checkpoint)
    assert default.summary()["fake_quant"] and "MobilenetV1/Conv2d_0/act_quant/min" in default.used


# ----------------------------------------------------------------------------- broken checkpoints
def test_renamed_variable_is_named(v1, tmp_path):
    name = "MobilenetV1/Conv2d_3_pointwise/weights"
    broken = slim_builders.rewrite_checkpoint(
        v1.checkpoint, tmp_path / "renamed.ckpt",
        lambda t: {(k + "_renamed" if k == name else k): v for k, v in t.items()})
    with pytest.raises(RestoreError, match=f"no variable '{name}'") as info:
        restore_checkpoint(v1.entry, broken, weights="raw")
    assert "Conv2d_3_pointwise/weights_renamed" in (info.value.hint or "")


def test_renamed_layer_in_an_ema_checkpoint_names_the_model_variable(v2, tmp_path):
    broken = slim_builders.rewrite_checkpoint(
        v2.checkpoint, tmp_path / "renamed.ckpt",
        lambda t: {k.replace("expanded_conv_3/project/", "expanded_conv_3/projection/"): v
                   for k, v in t.items()})
    with pytest.raises(RestoreError, match="no variable 'MobilenetV2/expanded_conv_3/project/weights'"):
        restore_checkpoint(v2.entry, broken)


def test_reshaped_variable_is_named_with_both_shapes(v2, tmp_path):
    name = "MobilenetV2/expanded_conv_4/depthwise/depthwise_weights/ExponentialMovingAverage"
    broken = slim_builders.rewrite_checkpoint(
        v2.checkpoint, tmp_path / "reshaped.ckpt",
        lambda t: {k: (np.zeros((5, 5) + v.shape[2:], v.dtype) if k == name else v) for k, v in t.items()})
    with pytest.raises(RestoreError) as info:
        restore_checkpoint(v2.entry, broken)
    message = str(info.value)
    assert name in message and "[5, 5, 96, 1]" in message and "expected [3, 3, 96, 1]" in message


def test_missing_moving_average_is_an_error_unless_not_strict(v2, tmp_path):
    name = "MobilenetV2/Conv_1/BatchNorm/gamma"
    broken = slim_builders.rewrite_checkpoint(
        v2.checkpoint, tmp_path / "no_shadow.ckpt",
        lambda t: {k: v for k, v in t.items() if k != name + "/ExponentialMovingAverage"})
    with pytest.raises(RestoreError, match=name):
        restore_checkpoint(v2.entry, broken)
    lenient = restore_checkpoint(v2.entry, broken, strict=False)
    assert name in lenient.summary()["used"]
    assert any("1 weights had no moving average" in note for note in lenient.summary()["notes"])


def test_unknown_model_variable_fails_strict_and_is_listed_otherwise(v1, tmp_path):
    extra = "MobilenetV1/Conv2d_14_pointwise/weights"
    broken = slim_builders.rewrite_checkpoint(
        v1.checkpoint, tmp_path / "extra.ckpt",
        lambda t: {**t, extra: np.zeros((1, 1, 8, 8), np.float32)})
    with pytest.raises(RestoreError, match=extra):
        restore_checkpoint(v1.entry, broken)
    lenient = restore_checkpoint(v1.entry, broken, strict=False)  # no frozen graph beside it: every average
    assert lenient.summary()["skipped"]["not_in_model"] == [extra]
    np.testing.assert_allclose(lenient(v1.images), v1.ema_all_probabilities, rtol=0, atol=ATOL)


def test_explicit_ema_on_a_checkpoint_without_averages_is_an_error(v1, tmp_path):
    plain = slim_builders.rewrite_checkpoint(
        v1.checkpoint, tmp_path / "plain.ckpt",
        lambda t: {k: v for k, v in t.items() if not k.endswith("/ExponentialMovingAverage")})
    with pytest.raises(RestoreError, match="holds no ExponentialMovingAverage"):
        restore_checkpoint(v1.entry, plain, weights="ema")
    assert restore_checkpoint(v1.entry, plain).summary()["weights"] == "raw"


def test_checkpoint_of_another_width_fails_on_shape(v1):
    wider = dataclasses.replace(v1.entry, width=0.5)
    with pytest.raises(RestoreError, match="MobilenetV1/Conv2d_0/weights(/ExponentialMovingAverage)?' has shape"):
        restore_checkpoint(wider, v1.checkpoint)


def test_bad_arguments(v1, tmp_path):
    with pytest.raises(RestoreError, match="unknown weights"):
        restore_checkpoint(v1.entry, v1.checkpoint, weights="average")
    with pytest.raises(RestoreError, match="no checkpoint"):
        restore_checkpoint(v1.entry, tmp_path / "nothing.ckpt")


# ----------------------------------------------------------------------------- paths and layouts
def test_v3_raw_reads_the_pristine_checkpoint(v3_models):
    built = v3_models["large"]
    model = restore_checkpoint(built.entry, built.checkpoint, weights="raw")
    assert "/pristine/" in model.summary()["source"]
    np.testing.assert_allclose(model(built.images), built.raw_probabilities, rtol=0, atol=ATOL)


def test_v3_model_directory_and_missing_pristine(v3_models, tmp_path):
    built = v3_models["small"]
    stem_dir = built.checkpoint.parent.parent
    model = restore_checkpoint(built.entry, stem_dir)  # the directory holding ema/ and pristine/
    np.testing.assert_allclose(model(built.images), built.ema_probabilities, rtol=0, atol=ATOL)
    only_ema = tmp_path / stem_dir.name / "ema"
    only_ema.mkdir(parents=True)
    for f in built.checkpoint.parent.iterdir():
        (only_ema / f.name).write_bytes(f.read_bytes())
    with pytest.raises(RestoreError, match="pristine"):
        restore_checkpoint(built.entry, only_ema / built.checkpoint.name, weights="raw")


def test_checkpoint_file_names_are_accepted(v1):
    index = v1.checkpoint.with_name(v1.checkpoint.name + ".index")
    model = restore_checkpoint(v1.entry, index)
    assert model.source == v1.checkpoint


def test_dispatch_through_restore_base(v1, v3_models):
    from zoo import restore
    from zoo.formats.ckpt import CheckpointModel

    model = restore(v1.directory, "ckpt", entry=v1.entry)
    np.testing.assert_allclose(model(v1.images), v1.probabilities, rtol=0, atol=ATOL)
    public = restore(v1.directory, "ckpt", entry=v1.entry, weights="raw")   # the public way in, typed
    assert isinstance(public, CheckpointModel) and public.weights == "raw"
    assert public.keras_model.count_params() == v1.param_count
    built = v3_models["large_minimalistic"]
    model = restore_file(built.entry, built.checkpoint, "ckpt", weights="raw", strict=True)
    np.testing.assert_allclose(model(built.images), built.raw_probabilities, rtol=0, atol=ATOL)


def test_export_writes_a_savedmodel_that_serves_the_same(v3_models, tmp_path):
    import tensorflow as tf

    built = v3_models["small"]
    model = restore_checkpoint(built.entry, built.checkpoint)
    out = model.export(tmp_path / "saved")
    assert (out / "saved_model.pb").is_file()
    loaded = tf.saved_model.load(str(out))  # keep a reference: its variables live in it
    serving = loaded.signatures["serving_default"]  # the one signature every format's export has
    served = serving(images=tf.constant(built.images))["probabilities"].numpy()
    np.testing.assert_allclose(served, model(built.images), rtol=0, atol=ATOL)  # graph-optimized: rounds differently
    with pytest.raises(UsageError, match="not empty"):
        model.export(out)


# ----------------------------------------------------------------------------- architectures
def test_v1_refuses_sizes_where_keras_pads_unlike_slim():
    entry = slim_builders.tiny_entry("v1", 0.25, 48)  # 48 -> 24 -> 12 -> 6 -> 3: odd before dw 12
    with pytest.raises(RestoreError, match="multiples of 32"):
        build_keras_model(entry)


@pytest.mark.parametrize("model_id", ["edgetpu_1.0_224_quant", "edgetpu_0.75_224_quant"])
def test_edgetpu_parameter_count_is_near_the_catalog(model_id):
    """Our own EdgeTPU model: 4.13M / 3.02M against the README's 4.0M / 2.9M (within 5%)."""
    entry = packaged_catalog().get(model_id)
    count = build_keras_model(entry).count_params()
    assert abs(count / 1e6 - entry.params_m) <= 0.05 * entry.params_m, (count, entry.params_m)


# Published figures against the Keras architecture (total parameters, BN statistics
# included). Upstream's tables round and may count slightly differently: within 3.5%.
# v3 small is the exception: the README says 2.9M / 2.4M, the architecture in
# mobilenet_v3.py (and Keras, the v3 paper's 2.5M / 2.0M, and OpenVINO's 2.537M for the
# converted v3-small_224_1.0_float model) has 2.56M / 2.05M.
FULL_SIZE = ["v1_1.0_224", "v1_0.5_160", "v1_0.25_128", "v2_1.4_224", "v2_1.0_224", "v2_0.35_96",
             "v3_large_1.0_224", "v3_large_0.75_224", "v3_large_minimalistic_1.0_224",
             "v3_small_minimalistic_1.0_224"]
V3_SMALL_KERAS_PARAMS = {"v3_small_1.0_224": 2_555_993, "v3_small_0.75_224": 2_052_577}


@pytest.mark.parametrize("model_id", FULL_SIZE)
def test_full_size_parameter_count_is_close_to_the_catalog(model_id):
    entry = packaged_catalog().get(model_id)
    count = build_keras_model(entry).count_params()
    assert abs(count / 1e6 - entry.params_m) <= 0.035 * entry.params_m, (count, entry.params_m)


@pytest.mark.parametrize("model_id", sorted(V3_SMALL_KERAS_PARAMS))
def test_v3_small_parameter_count_differs_from_the_readme_as_documented(model_id):
    entry = packaged_catalog().get(model_id)
    count = build_keras_model(entry).count_params()
    assert count == V3_SMALL_KERAS_PARAMS[model_id]
    assert entry.params_m - count / 1e6 > 0.3


def test_restore_is_quick_for_a_tiny_model(v2):
    start = time.perf_counter()
    restore_checkpoint(v2.entry, v2.checkpoint)
    assert time.perf_counter() - start < 30


# ----------------------------------------------------------------------------- which weights: the frozen graph decides
@pytest.fixture(scope="module")
def v1_frozen_with_every_average(tmp_path_factory):
    return slim_builders.write_v1_model(tmp_path_factory.mktemp("v1_all"), frozen_set="ema", seed=11)


def test_the_set_with_batch_norm_averages_is_found(v1_frozen_with_every_average):
    built = v1_frozen_with_every_average
    model = restore_checkpoint(built.entry, built.checkpoint)
    assert model.summary()["weights"] == "ema"
    np.testing.assert_allclose(model(built.images), built.ema_all_probabilities, rtol=0, atol=ATOL)
    assert any(note.startswith("weights ema: the set that reproduces") for note in model.notes)
    # the batch-norm statistics came from their shadows
    assert "MobilenetV1/Conv2d_0/BatchNorm/moving_mean/ExponentialMovingAverage" in model.used


@pytest.mark.slow
def test_v2_frozen_with_raw_weights_gets_raw(tmp_path):
    built = slim_builders.write_v2_model(tmp_path, frozen_set="raw", width=0.35, resolution=32, seed=5)
    model = restore(built.directory, "ckpt", entry=built.entry)
    assert model.summary()["weights"] == "raw"
    np.testing.assert_allclose(model(built.images), built.raw_probabilities, rtol=0, atol=ATOL)


def test_no_set_matching_the_frozen_graph_warns_and_keeps_the_default(v1, v1_frozen_with_every_average):
    other = v1_frozen_with_every_average  # same architecture, other training run
    with pytest.warns(UserWarning, match="no weight set of the checkpoint reproduces"):
        model = restore_checkpoint(v1.entry, v1.checkpoint, reference=other.frozen_graph)
    assert model.summary()["weights"] == "ema"
    assert any("no weight set" in note for note in model.notes)


def test_explicit_weights_are_not_second_guessed(v1):
    model = restore_checkpoint(v1.entry, v1.checkpoint, weights="ema")  # the frozen graph is raw
    assert model.summary()["weights"] == "ema"
    assert not any("reproduces" in note for note in model.notes)


def test_latest_checkpoint_sorts_steps_as_numbers(v1, tmp_path):
    from zoo.fetching.roles import checkpoint_order, find_file

    folder = tmp_path / "train"
    folder.mkdir()
    for step in (99999, 100000, 7):
        for f in v1.checkpoint.parent.glob(v1.checkpoint.name + ".*"):
            if not f.name.endswith(".meta"):
                (folder / f.name.replace(v1.checkpoint.name, f"model.ckpt-{step}")).write_bytes(f.read_bytes())
    model = restore_checkpoint(v1.entry, folder, reference=False)
    assert model.source.name == "model.ckpt-100000"
    entry = dataclasses.replace(v1.entry, files={**v1.entry.files, "checkpoint": "train/model.ckpt-*"})
    assert find_file(entry, tmp_path, "checkpoint").name == "model.ckpt-100000"
    names = ["model.ckpt-100000", "model.ckpt-99999", "model.ckpt", "model.ckpt-7"]
    assert [n for n in sorted(names, key=lambda n: checkpoint_order(Path(n)))] == \
        ["model.ckpt", "model.ckpt-7", "model.ckpt-99999", "model.ckpt-100000"]
