"""One class of bad data folders, through every command that reads one.

`classify DIR`, `eval --data`, `finetune --data` and `export --calibration` share the folder rules
(``zoo.data.imagefiles``); each damage below must give every command one clear error naming the
file, a non-zero exit, no traceback and nothing written, before any model runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from . import real_weights
from .conftest import DATA

pytest.importorskip("PIL")
pytest.importorskip("ai_edge_litert")

TFLITE = str(DATA / "mobilenet_v1_0.25_128_quant.tflite")
TABBY, CHICKADEE = "n02123045", "n01592084"


def _damage(folder: Path, kind: str) -> str:
    """Put one damaged thing in ``folder``; returns the name the error must mention."""
    if kind == "fifo":
        os.mkfifo(folder / "stuck.jpg")
        return "stuck.jpg"
    if kind == "symlink_loop":
        os.symlink(folder / "b.jpg", folder / "a.jpg")
        os.symlink(folder / "a.jpg", folder / "b.jpg")
        return "a.jpg"
    if kind == "dangling_link":
        os.symlink(folder / "gone.png", folder / "link.png")
        return "link.png"
    if kind == "truncated_image":
        data = (DATA / "cat.bmp").read_bytes()
        (folder / "half.bmp").write_bytes(data[: len(data) // 3])
        return "half.bmp"
    if kind == "not_an_image":
        (folder / "fake.png").write_bytes(b"<html>not found</html>")
        return "fake.png"
    if kind == "huge_file":
        with open(folder / "huge.jpg", "wb") as f:  # sparse: no disk used, over the 256 MiB cap
            f.truncate(300 << 20)
        return "huge.jpg"
    if kind == "unreadable" and os.geteuid() != 0:
        (folder / "secret.png").write_bytes((DATA / "cat.bmp").read_bytes())
        (folder / "secret.png").chmod(0)
        return "secret.png"
    if kind == "unreadable":
        pytest.skip("root reads files whatever their mode")
    raise AssertionError(kind)


# each damage, and the words of the reason every command must give for it
REASON = {"fifo": "a fifo", "symlink_loop": "loops", "dangling_link": "dangling", "truncated_image": "truncated",
          "not_an_image": "not an image", "huge_file": "256 MiB", "unreadable": "ermission"}
DAMAGE = sorted(REASON)
COMMANDS = ["classify", "eval", "finetune", "export"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return real_weights.write_checkpoint(tmp_path_factory.mktemp("real_v1"))


def _data(root: Path) -> Path:
    """Two synset folders of real photos (valid ImageNet data and valid class folders alike)."""
    for synset, photo in ((TABBY, "cat.bmp"), (CHICKADEE, "bird.bmp")):
        (root / synset).mkdir(parents=True)
        for i in range(3):
            shutil.copy(DATA / photo, root / synset / f"{i}_{photo}")
    return root


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_data_is_one_clear_error_in_every_command(cli, checkpoint, tmp_path, kind, command):
    root = _data(tmp_path / "data")
    named = _damage(root / TABBY, kind)
    out = tmp_path / "out"
    args = {
        "classify": ["classify", TFLITE, str(root / TABBY)],
        "eval": ["eval", TFLITE, "--data", str(root)],
        "finetune": ["finetune", real_weights.CATALOG_ID, "--checkpoint", str(checkpoint), "--data", str(root),
                     "--out", str(out), "--epochs", "1"],
        "export": ["export", str(checkpoint), "--to", "tflite", "--quantize", "int8", "--calibration", str(root),
                   "--out", str(out)],
    }[command]
    code, stdout, stderr = cli(*args)
    assert code in (1, 2), (code, stdout, stderr)
    assert named in stderr and REASON[kind] in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.splitlines()) <= 12, stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith((".out", "out"))]
