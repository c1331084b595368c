"""zoo.fetching.roles: which unpacked file plays which role, when the catalog's guess misses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from zoo.catalog import load_catalog
from zoo.errors import RestoreError, UsageError
from zoo.fetching.roles import find_file, roles_found


def _files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _entry(**files):
    return dataclasses.replace(load_catalog().get("v3_large_1.0_224"), files=files)


def test_a_missed_guess_searches_ema_then_the_folder_then_pristine(tmp_path):
    entry = _entry(checkpoint="nowhere/model-*")
    _files(tmp_path, "r/pristine/model.ckpt-900.index", "r/model.ckpt-5.index")
    assert find_file(entry, tmp_path, "checkpoint") == tmp_path / "r/model.ckpt-5"
    _files(tmp_path, "r/ema/model-100.index", "r/ema/model-99999.index")
    assert find_file(entry, tmp_path, "checkpoint") == tmp_path / "r/ema/model-99999"  # numeric, not by name


def test_two_sets_with_the_same_step_are_refused_naming_both(tmp_path):
    entry = _entry(checkpoint="nowhere/model-*")  # the guess misses: both sets are candidates
    _files(tmp_path, "r/model.ckpt-7.index", "r/other.ckpt-7.index")
    with pytest.raises(UsageError) as err:
        find_file(entry, tmp_path, "checkpoint")
    assert "r/model.ckpt-7" in err.value.message and "r/other.ckpt-7" in err.value.message


def test_nothing_found_lists_what_the_folder_holds(tmp_path):
    entry = _entry(checkpoint="r/model.ckpt-*", tflite="r/*.tflite")
    folder = tmp_path / "unpacked"
    _files(folder, "r/readme.txt", "r/weights.bin")
    with pytest.raises(RestoreError) as err:
        find_file(entry, folder, "tflite")
    assert "r/readme.txt" in err.value.hint and "r/weights.bin" in err.value.hint
    assert "pass the file" in err.value.hint and "--repair" not in err.value.hint  # not a cache entry
    assert roles_found(entry, folder) == {"checkpoint": None, "tflite": None}


def test_several_tflite_files_variant_and_the_entrys_own_kind(tmp_path):
    quant = dataclasses.replace(load_catalog().get("edgetpu_1.0_224_quant"))
    root = quant.archive_root
    _files(tmp_path, *(f"{root}/{root}_{k}.tflite" for k in ("float", "int8", "uint8")),
           f"{root}/{root}_uint8_edgetpu.tflite")  # compiled for the TPU: never a CPU candidate
    assert find_file(quant, tmp_path, "tflite").name == f"{root}_uint8.tflite"
    assert find_file(quant, tmp_path, "tflite", variant="int8").name == f"{root}_int8.tflite"
    with pytest.raises(UsageError, match="variant"):
        find_file(quant, tmp_path, "tflite", variant="int4")
    float_entry = dataclasses.replace(quant, quantized=False)
    assert find_file(float_entry, tmp_path, "tflite").name == f"{root}_float.tflite"
    _files(tmp_path, f"{root}/{root}_v2_uint8.tflite")
    with pytest.raises(UsageError) as err:  # two _uint8 files: ambiguous, both named
        find_file(quant, tmp_path, "tflite")
    assert f"{root}_v2_uint8.tflite" in err.value.message and f"{root}_uint8.tflite" in err.value.message


def test_a_saved_model_is_not_a_frozen_graph(tmp_path):
    entry = _entry(frozen_graph="r/*.pb")
    _files(tmp_path, "r/export/saved_model.pb")
    with pytest.raises(RestoreError):
        find_file(entry, tmp_path, "frozen_graph")
