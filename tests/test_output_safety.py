"""`finetune` and `export` never destroy what they did not write, and leave nothing half-written.

Every refusal here happens before TensorFlow is loaded, so these run in well under a second
each; the runs that train are in test_finetune.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zoo.training.publish import check_target, replaceable
from zoo.errors import UsageError

from .conftest import STATE
from .digits import write_digits

MODEL = "v1_0.25_128"
TFLITE_BYTES = (Path(__file__).parent / "data" / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()


def _make(path: Path, what: str) -> Path:
    """Something at ``path``: what a user may have there by mistake, or what this tool writes."""
    if what == "user_file":
        path.write_text("my notes\n")
    elif what == "user_folder":
        path.mkdir()
        (path / "thesis.tex").write_text("chapter 1\n")
    elif what == "empty_folder":
        path.mkdir()
    elif what == "finetune_out":
        path.mkdir()
        (path / "finetune.json").write_text("{}")
    elif what == "saved_model":
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"\x08\x01")
    elif what == "tflite":
        path.write_bytes(TFLITE_BYTES)
    elif what == "renamed_text_as_tflite":
        path.write_text("not a flatbuffer at all")
    elif what.startswith("link_to_"):
        real = _make(path.with_name(path.name + "_real"), what[len("link_to_"):])
        path.symlink_to(real)
    return path


@pytest.mark.parametrize("kind, what, allowed", [
    ("finetune", "finetune_out", True),
    ("finetune", "empty_folder", True),
    ("finetune", "user_folder", False),
    ("finetune", "user_file", False),
    ("finetune", "link_to_finetune_out", False),  # the link is replaced, not what it points to: refuse
    ("finetune", "saved_model", False),
    ("saved_model", "saved_model", True),
    ("saved_model", "empty_folder", True),
    ("saved_model", "finetune_out", False),
    ("saved_model", "user_folder", False),
    ("tflite", "tflite", True),
    ("tflite", "renamed_text_as_tflite", False),
    ("tflite", "empty_folder", False),
    ("tflite", "link_to_tflite", False),
])
def test_overwrite_replaces_only_what_this_tool_writes(tmp_path, kind, what, allowed):
    target = _make(tmp_path / "out", what)
    assert replaceable(target, kind) is allowed
    if allowed:
        check_target(target, overwrite=True, kind=kind)
    else:
        with pytest.raises(UsageError, match="overwrite replaces only what this tool wrote"):
            check_target(target, overwrite=True, kind=kind)
    with pytest.raises(UsageError, match="already exists"):
        check_target(target, overwrite=False, kind=kind)


def _listing(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (links not followed) with a regular file's content."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if STATE in path.relative_to(root).parts:
                continue
            found[str(path.relative_to(root))] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("digits") / "d", size=32, limit=60, classes=(0, 1, 7))


@pytest.mark.parametrize("what", ["user_file", "user_folder", "link_to_finetune_out"])
def test_finetune_overwrite_refuses_a_users_file_or_folder(cli, digits, tmp_path, what):
    out = _make(tmp_path / "out", what)
    before = _listing(tmp_path)
    code, _, err = cli("finetune", MODEL, "--data", str(digits), "--out", str(out), "--overwrite")
    assert code == 2 and "--overwrite replaces only what this tool wrote" in err and "Traceback" not in err
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("to, what", [("tflite", "user_file"), ("tflite", "renamed_text_as_tflite"),
                                      ("saved_model", "user_folder")])
def test_export_overwrite_refuses_a_users_file_or_folder(cli, tmp_path, to, what):
    out = _make(tmp_path / "out", what)
    before = _listing(tmp_path)
    code, _, err = cli("export", MODEL, "--to", to, "--out", str(out), "--overwrite")
    assert code == 2 and "--overwrite replaces only what this tool wrote" in err
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("case, expected", [
    ("empty_class", "is empty"),
    ("text_file", "not readable images"),
    ("fake_jpeg", "not readable images"),
    ("missing_data", "no such directory"),
    ("missing_parent", "does not exist"),
    ("val_data_lacks_a_class", "missing: 7"),
])
def test_finetune_bad_data_is_one_message_and_writes_nothing(cli, digits, tmp_path, case, expected):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(digits, data)
    out, extra = tmp_path / "out", []
    if case == "empty_class":
        (data / "zebra").mkdir()
    elif case == "text_file":
        (data / "1" / "notes.txt").write_text("hello")
    elif case == "fake_jpeg":
        (data / "7" / "photo.jpg").write_bytes(b"<html>404</html>")
    elif case == "missing_data":
        shutil.rmtree(data)
    elif case == "missing_parent":
        out = tmp_path / "no" / "such" / "out"
    elif case == "val_data_lacks_a_class":
        val = tmp_path / "val"
        shutil.copytree(digits, val)
        shutil.rmtree(val / "7")
        extra = ["--val-data", str(val)]
    before = _listing(tmp_path)
    code, _, err = cli("finetune", MODEL, "--data", str(data), "--out", str(out), *extra)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert _listing(tmp_path) == before


def test_export_overwrite_accepts_a_tflite_file_it_can_replace(cli, tmp_path):
    """The check passes for a real .tflite (the next check, the calibration folder, is what stops
    this run, before anything is loaded or written)."""
    out = _make(tmp_path / "old.tflite", "tflite")
    code, _, err = cli("export", MODEL, "--to", "tflite", "--out", str(out), "--overwrite",
                       "--quantize", "int8", "--calibration", str(tmp_path / "nowhere"))
    assert code == 2 and "--calibration" in err and "no such directory" in err and "replaces only" not in err, err
    assert out.read_bytes() == TFLITE_BYTES
