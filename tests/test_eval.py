"""`eval` / ``zoo.evaluate`` on real weights and real photos, in every data layout.

The expected top-1/top-5 are computed here independently of ``zoo``: TensorFlow's own
ops decode and preprocess (``decode_image``, ``central_crop``, ``resize`` bilinear
without antialiasing, ``(x - 0.5) * 2``), LiteRT's interpreter runs the vendored real
uint8 model, and the label's rank decides (ties: lower class index first, as ``eval``).
The photos are the vendored cat and bird (plus the dragonfly when ../shared exists),
and JPEG variants of them (flipped, cropped, scaled) so the set has a dozen images.
Labels are given by hand: what the photo shows, some of them plausible confusions, so
top-1 and top-5 differ and neither is 0 or 100.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("PIL")
tf = pytest.importorskip("tensorflow")
from PIL import Image  # noqa: E402

from zoo.data.datasets import imagenet_synsets
from zoo.errors import DataError
from zoo.run.evaluation import JSON_KEYS, evaluate

pytestmark = pytest.mark.tf
DATA = Path(__file__).resolve().parent / "data"
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
TFLITE = DATA / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = (DATA / "imagenet_labels.txt").read_text().splitlines()

# Hand labels (synset ids): the cat is a tabby-ish house cat, the bird a chickadee.
TABBY, EGYPTIAN, CHICKADEE, DRAGONFLY, JUNCO = "n02123045", "n02124075", "n01592084", "n02268443", "n01534433"


def pct(value: float):
    """eval reports percentages rounded to 4 decimals."""
    return pytest.approx(value, abs=1e-3)


def _index(synset: str) -> int:
    return imagenet_synsets().index(synset) + 1


def _variants(photo: Path) -> dict[str, Image.Image]:
    """Three JPEG-able variants of a real photo: itself, mirrored, an off-centre crop scaled up."""
    with Image.open(photo) as img:
        img = img.convert("RGB")
    w, h = img.size
    return {"a": img, "b": img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            "c": img.crop((w // 8, 0, w, h * 7 // 8)).resize((w * 3 // 4 + 1, h * 3 // 4))}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[tuple[Path, str]]:
    """(JPEG file, hand label) for every variant of every real photo, in no particular order."""
    root = tmp_path_factory.mktemp("photos")
    sources = [(DATA / "cat.bmp", [TABBY, EGYPTIAN, TABBY]), (DATA / "bird.bmp", [CHICKADEE, CHICKADEE, JUNCO])]
    if (REALDATA / "dragonfly.bmp").exists():
        sources.append((REALDATA / "dragonfly.bmp", [DRAGONFLY, DRAGONFLY, DRAGONFLY]))
    out = []
    for photo, labels in sources:
        for (key, img), label in zip(_variants(photo).items(), labels):
            path = root / f"{photo.stem}_{key}.jpg"
            img.save(path, quality=92)
            out.append((path, label))
    bmp = root / "bird_original.bmp"  # one BMP as it came, for the decoders other than JPEG
    bmp.write_bytes((DATA / "bird.bmp").read_bytes())
    out.append((bmp, CHICKADEE))
    return out


def _expected(items: list[tuple[Path, str]], crop: float = 0.875) -> tuple[float, float]:
    """Top-1/top-5 (%) from TF ops + the LiteRT interpreter, nothing from zoo."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(TFLITE), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    (in_scale, in_zero), (out_scale, out_zero) = inp["quantization"], out["quantization"]
    hits1 = hits5 = 0
    for path, synset in items:
        image = tf.image.convert_image_dtype(tf.io.decode_image(path.read_bytes(), channels=3), tf.float32)
        if crop < 1.0:
            image = tf.image.central_crop(image, crop)
        image = tf.image.resize(image[None], (128, 128), "bilinear", antialias=False)
        x = ((image - 0.5) * 2.0).numpy()
        q = np.clip(np.round(x / in_scale) + in_zero, 0, 255).astype(np.uint8)
        interpreter.set_tensor(inp["index"], q)
        interpreter.invoke()
        probs = (interpreter.get_tensor(out["index"])[0].astype(np.float32) - out_zero) * out_scale
        order = np.argsort(-probs, kind="stable")
        hits1 += int(order[0] == _index(synset))
        hits5 += int(_index(synset) in order[:5])
    return 100.0 * hits1 / len(items), 100.0 * hits5 / len(items)


def _sorted_like_folders(items):
    """The order eval reads synset folders in: by folder (synset), then file name."""
    return sorted(items, key=lambda item: (item[1], item[0].name))


# ----------------------------------------------------------------------------- layouts
def write_synset_folders(root: Path, items) -> Path:
    for path, synset in items:
        (root / synset).mkdir(parents=True, exist_ok=True)
        (root / synset / path.name).write_bytes(path.read_bytes())
    return root


def _example(path: Path, synset: str, **drop) -> bytes:
    data = path.read_bytes()
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.suffix[1:].encode()])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[_index(synset)])),
        "image/class/synset": tf.train.Feature(bytes_list=tf.train.BytesList(value=[synset.encode()])),
        "image/class/text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[LABELS[_index(synset)].encode()])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.name.encode()])),
    }
    for key, value in drop.items():
        if value is None:
            del feature[key.replace("__", "/")]
        else:
            feature[key.replace("__", "/")] = value
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecords(root: Path, items, split: str = "validation", shards: int = 2, **drop) -> Path:
    """TF-slim's layout: ``<split>-0000k-of-0000n`` shards of tf.train.Example records."""
    root.mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        with tf.io.TFRecordWriter(str(root / f"{split}-{k:05d}-of-{shards:05d}")) as writer:
            for path, synset in items[k::shards]:
                writer.write(_example(path, synset, **drop))
    return root


def write_csv(path: Path, items, style: str = "mixed") -> Path:
    """``path,label`` rows; labels as synset ids, class indices and exact label texts by turns."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for i, (image, synset) in enumerate(items):
            label = [synset, str(_index(synset)), LABELS[_index(synset)]][i % 3] if style == "mixed" else synset
            writer.writerow([str(image), label])
    return path


# ----------------------------------------------------------------------------- real weights
@pytest.mark.parametrize("threads", [1, 3])  # 3: three one-thread copies of the model, side by side
def test_real_model_in_synset_folders(photos, tmp_path, threads):
    import zoo

    root = write_synset_folders(tmp_path / "val", photos)
    result = zoo.evaluate(TFLITE, root, threads=threads)  # the public API
    top1, top5 = _expected(photos)
    assert (result.top1, result.top5) == (pct(top1), pct(top5))
    assert 0 < result.top1 < result.top5 <= 100  # the hand labels make both figures informative
    assert result.images == len(photos) and result.skipped == 0
    assert (result.claimed_top1, result.claimed_top5) == (39.5, 64.4)
    assert result.copies == 1 if threads == 1 else 1 <= result.copies <= 3  # copies are made when needed


def test_real_model_in_tfrecords(photos, tmp_path):
    root = write_tfrecords(tmp_path / "records", photos)
    write_tfrecords(root, photos[:2], split="train", shards=1)  # must be left alone
    result = evaluate(TFLITE, root, threads=1, batch_size=3)
    top1, top5 = _expected(photos)
    assert (result.images, result.top1, result.top5) == (len(photos), pct(top1), pct(top5))
    train = evaluate(TFLITE, root, split="train")
    assert train.images == 2


def test_real_model_in_a_csv(photos, tmp_path):
    result = evaluate(TFLITE, write_csv(tmp_path / "val.csv", photos))
    top1, top5 = _expected(photos)
    assert (result.images, result.top1, result.top5) == (len(photos), pct(top1), pct(top5))


def test_tsv_with_relative_paths_and_crop_one(photos, tmp_path):
    for path, _ in photos:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    tsv = tmp_path / "val.tsv"
    tsv.write_text("".join(f"{path.name}\t{synset}\n" for path, synset in photos))
    result = evaluate(TFLITE, tsv, crop=1.0)
    top1, top5 = _expected(photos, crop=1.0)
    assert (result.top1, result.top5) == (pct(top1), pct(top5))


def test_limit_takes_the_first_images_in_sorted_order(photos, tmp_path):
    root = write_synset_folders(tmp_path / "val", photos)
    first = _sorted_like_folders(photos)[:4]
    result = evaluate(TFLITE, root, limit=4)
    assert result.images == 4
    assert (result.top1, result.top5) == tuple(pct(v) for v in _expected(first))
    assert evaluate(TFLITE, root, limit=1000).images == len(photos)


def test_cli_json_has_exactly_the_documented_keys(photos, tmp_path, cli):
    root = write_synset_folders(tmp_path / "val", photos)
    code, out, err = cli("eval", str(TFLITE), "--data", str(root), "--json", "--threads", "2")
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == list(JSON_KEYS)
    assert data["id"] == "v1_0.25_128_quant" and data["format"] == "tflite"
    assert data["images"] == len(photos) and data["skipped"] == 0
    assert (data["top1"], data["top5"]) == tuple(pct(v) for v in _expected(photos))
    assert data["images_per_s"] > 0


def test_cli_summary_compares_with_the_catalog(photos, tmp_path, cli):
    root = write_synset_folders(tmp_path / "val", photos)
    code, out, err = cli("eval", str(TFLITE), "--data", str(root))
    assert code == 0, err
    assert "39.5%" in out and "64.4%" in out and f"{len(photos)} images" in out
    assert len(out.splitlines()) < 20  # one screen


# ----------------------------------------------------------------------------- bad input
def _fails(cli, *args) -> str:
    code, out, err = cli("eval", str(TFLITE), *args)
    assert code != 0
    assert "Traceback" not in out + err
    return err


def test_empty_folder(tmp_path, cli):
    (tmp_path / "val").mkdir()
    assert "is empty" in _fails(cli, "--data", str(tmp_path / "val"))


def test_empty_synset_folders(tmp_path, cli):
    (tmp_path / "val" / TABBY).mkdir(parents=True)
    assert "no images" in _fails(cli, "--data", str(tmp_path / "val"))


def test_folders_without_synset_names(photos, tmp_path, cli):
    for name in ("cats", "birds"):
        (tmp_path / "val" / name).mkdir(parents=True)
        (tmp_path / "val" / name / "x.jpg").write_bytes(photos[0][0].read_bytes())
    err = _fails(cli, "--data", str(tmp_path / "val"))
    assert "not ILSVRC synset ids" in err and "'birds'" in err


def test_unknown_synset_folder(photos, tmp_path, cli):
    (tmp_path / "val" / "n99999999").mkdir(parents=True)
    err = _fails(cli, "--data", str(tmp_path / "val"))
    assert "n99999999" in err


def test_tfrecord_missing_a_feature(photos, tmp_path, cli):
    root = write_tfrecords(tmp_path / "records", photos, shards=1, image__class__label=None)
    err = _fails(cli, "--data", str(root))
    assert "validation-00000-of-00001#0" in err and "image/class/label" in err


def test_tfrecord_label_out_of_range(photos, tmp_path, cli):
    bad = tf.train.Feature(int64_list=tf.train.Int64List(value=[1001]))
    root = write_tfrecords(tmp_path / "records", photos[:3], shards=1, image__class__label=bad,
                           image__class__synset=None)
    err = _fails(cli, "--data", str(root))
    assert "#0" in err and "1001" in err and "out of range" in err


def test_tfrecord_label_disagreeing_with_its_synset(photos, tmp_path):
    off_by_one = tf.train.Feature(int64_list=tf.train.Int64List(value=[_index(TABBY) - 1]))
    root = write_tfrecords(tmp_path / "records", photos[:1], shards=1, image__class__label=off_by_one)
    with pytest.raises(DataError, match="disagrees with synset"):
        evaluate(TFLITE, root)


def test_truncated_tfrecord_shard(photos, tmp_path, cli):
    root = write_tfrecords(tmp_path / "records", photos[:2], shards=1)
    shard = root / "validation-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-100])
    assert "validation-00000-of-00001" in _fails(cli, "--data", str(root))


def test_wrong_split_names_the_one_there(photos, tmp_path, cli):
    root = write_tfrecords(tmp_path / "records", photos[:2], split="train", shards=1)
    assert "--split train" in _fails(cli, "--data", str(root))


def test_csv_label_out_of_range_names_the_row(photos, tmp_path, cli):
    path = tmp_path / "val.csv"
    path.write_text(f"{photos[0][0]},{TABBY}\n{photos[1][0]},1001\n")
    err = _fails(cli, "--data", str(path))
    assert "row 2" in err and "1001" in err and "out of range" in err


def test_csv_unknown_and_ambiguous_labels(photos, tmp_path, cli):
    path = tmp_path / "val.csv"
    path.write_text(f"{photos[0][0]},tabby cat\n")
    err = _fails(cli, "--data", str(path))
    assert "row 1" in err and "unknown label 'tabby cat'" in err and "tabby, tabby cat" in err
    path.write_text(f"{photos[0][0]},crane\n")  # two ImageNet classes are called 'crane'
    assert "names 2 classes" in _fails(cli, "--data", str(path))


def test_corrupt_jpeg_in_the_middle_of_a_run(photos, tmp_path, cli):
    root = write_synset_folders(tmp_path / "val", photos)
    ordered = _sorted_like_folders(photos)
    victim = root / ordered[len(ordered) // 2][1] / ordered[len(ordered) // 2][0].name
    victim.write_bytes(victim.read_bytes()[:200] + b"\x00garbage" * 50)
    broken = root / ordered[0][1] / "zz_not_really.jpg"
    broken.write_bytes(b"this is not an image")
    err = _fails(cli, "--data", str(root))
    assert str(broken) in err or str(victim) in err
    assert "--skip-errors" in err

    code, out, err = cli("eval", str(TFLITE), "--data", str(root), "--skip-errors", "--json")
    assert code == 0, err
    data = json.loads(out)
    readable = [item for item in photos if item[0].name != victim.name or item[1] != victim.parent.name]
    assert data["skipped"] >= 1 and data["images"] + data["skipped"] == len(photos) + 1
    if data["skipped"] == 2:  # the truncated JPEG did not decode either: the rest is exact
        assert (data["top1"], data["top5"]) == tuple(pct(v) for v in _expected(readable))
    code, out, _ = cli("eval", str(TFLITE), "--data", str(root), "--skip-errors")
    assert code == 0 and "skipped" in out and "zz_not_really.jpg" in out


def test_parallel_copies_answer_every_image_in_the_sets_order(photos, tmp_path):
    """Three one-thread copies of the model work on different images at once; each image
    still gets the top-5 one model gives it alone, and the answers come back in order."""
    import zoo
    from zoo.data.datasets import LabelSpace, open_dataset
    from zoo.run.evaluation import ModelPool, scored_in_workers, top_k
    from zoo.data.images import decode_pixels, preprocess_array

    model = zoo.restore(TFLITE, threads=1)
    samples = list(open_dataset(write_synset_folders(tmp_path / "val", photos), LabelSpace.imagenet(1001))) * 4
    pool = ModelPool(model, 3)
    answers = list(scored_in_workers(pool, iter(samples), (128, 128), 0.875, 5, chunk=2))
    alone = zoo.restore(TFLITE, threads=1)
    assert [sample for sample, _ in answers] == samples
    for sample, top in answers:
        image = preprocess_array(decode_pixels(sample.read_bytes()), (128, 128))
        assert top.tolist() == top_k(alone(image[None]), 5)[0].tolist(), sample.source
    assert 1 <= pool.made <= 3 and pool.idle.qsize() == pool.made  # copies made on demand, all given back


def test_the_model_pool_makes_copies_only_when_all_are_busy():
    import zoo
    from zoo.run.evaluation import ModelPool

    model = zoo.restore(TFLITE, threads=1)
    pool = ModelPool(model, 3)
    first = pool.take()
    assert first is model and pool.made == 1  # a one-thread model is the first copy
    pool.give_back(first)
    assert pool.take() is model and pool.made == 1  # idle: no copy made
    busy = [model, pool.take(), pool.take()]
    assert pool.made == 3 and len({id(m) for m in busy}) == 3 and all(m.threads == 1 for m in busy)
    image = np.zeros((1, 128, 128, 3), np.float32)
    assert all(np.array_equal(m(image), model(image)) for m in busy)
    for m in busy:
        pool.give_back(m)
    assert pool.take() in busy and pool.made == 3  # never more than its size
    assert ModelPool(zoo.restore(TFLITE, threads=2), 2).made == 0  # a two-thread model is not a copy


def test_parallel_copies_stop_at_the_first_unreadable_image(photos, tmp_path):
    root = write_synset_folders(tmp_path / "val", photos)
    ordered = _sorted_like_folders(photos)
    position = len(ordered) - 3
    victim = root / ordered[position][1] / ordered[position][0].name
    victim.write_bytes(b"\xff\xd8\xff not a JPEG after all")
    with pytest.raises(DataError) as caught:
        evaluate(TFLITE, root, threads=3)
    assert str(victim) in str(caught.value)
    assert f"{position} images were read before it" in caught.value.hint


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_default_copies_follow_the_cpus_this_process_may_use(photos, tmp_path):
    """Under taskset (or a container's CPU set) eval runs one copy per CPU it may use, not per
    CPU the machine has."""
    root = write_synset_folders(tmp_path / "val", photos)
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        result = evaluate(TFLITE, root)
    finally:
        os.sched_setaffinity(0, allowed)
    assert result.copies == 1 and result.images == len(photos)


def test_a_copy_of_a_model_whose_file_changed_is_refused(tmp_path):
    """eval's copies are read from the file again: a file replaced meanwhile is an error."""
    import zoo
    from zoo.errors import RestoreError

    path = tmp_path / TFLITE.name
    path.write_bytes(TFLITE.read_bytes())
    model = zoo.restore(path, threads=1)
    image = np.zeros((1, 128, 128, 3), np.float32)
    assert np.array_equal(model.copy()(image), model(image))
    inputs = tf.keras.Input((128, 128, 3))
    outputs = tf.keras.layers.Dense(1001, activation="softmax")(tf.keras.layers.GlobalAveragePooling2D()(inputs))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inputs, outputs)).convert())
    with pytest.raises(RestoreError, match="changed while it was being loaded"):
        model.copy()


def test_many_threads_on_a_small_set_make_only_the_copies_that_work(photos, tmp_path):
    """--threads 300 on a dozen images: at most one copy per image in flight, same answers."""
    root = write_synset_folders(tmp_path / "val", photos)
    result = evaluate(TFLITE, root, threads=300)
    assert result.images == len(photos) and 1 <= result.copies <= len(photos)
    assert (result.top1, result.top5) == tuple(pct(v) for v in _expected(photos))


def test_a_pool_whose_copies_fail_fails_every_taker_and_never_hangs(tmp_path):
    """If making a copy fails (the file changed), workers waiting for that copy must fail too,
    not wait forever for a model that will never come back."""
    import threading

    import zoo
    from zoo.errors import RestoreError
    from zoo.run.evaluation import ModelPool

    path = tmp_path / TFLITE.name
    path.write_bytes(TFLITE.read_bytes())
    pool = ModelPool(zoo.restore(path, threads=2), 2)  # a two-thread model: every copy is made
    path.write_bytes(b"\x00" * 64)
    outcomes = []

    def take():
        try:
            outcomes.append(pool.take())
        except RestoreError as exc:
            outcomes.append(exc)

    takers = [threading.Thread(target=take, daemon=True) for _ in range(4)]
    for taker in takers:
        taker.start()
    for taker in takers:
        taker.join(timeout=30)
    assert not any(taker.is_alive() for taker in takers)
    assert len(outcomes) == 4 and all(isinstance(o, RestoreError) for o in outcomes)


def test_missing_data_path_and_bad_flags(tmp_path, cli):
    assert "not found" in _fails(cli, "--data", str(tmp_path / "nope"))
    assert "--crop" in _fails(cli, "--data", str(tmp_path), "--crop", "0")


def test_progress_bar_on_a_terminal_only(photos, tmp_path):
    """A real pty (60 columns): the bar shows the running top-1 and images/s; a pipe gets none."""
    import subprocess

    from .conftest import console_script
    from .terminal import run_in_pty

    root = write_synset_folders(tmp_path / "val", photos)
    cmd = [console_script(), "eval", str(TFLITE), "--data", str(root), "--threads", "1"]
    env = dict(os.environ, LINES="30", TERM="xterm")
    code, shown, _ = run_in_pty(cmd, columns=60, env=env)
    assert code == 0, shown
    assert "top-1" in shown and "img/s" in shown and f"{len(photos)}/{len(photos)}" in shown
    assert "39.5%" in shown  # then the summary

    piped = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 0 and "img/s" not in piped.stderr + piped.stdout
