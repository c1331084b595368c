"""The card beside an exported file (zoo.formats.card): read as untrusted input, every damage named.

Uses the real upstream uint8 v1 0.25/128 file under a name nothing can recognise.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from zoo.catalog import load_catalog
from zoo.formats.card import CARD_KIND, card_path, write_card

from .conftest import DATA

pytest.importorskip("ai_edge_litert")

MODEL = "v1_0.25_128_quant"


@pytest.fixture
def renamed(tmp_path):
    path = tmp_path / "my_model.tflite"
    shutil.copy(DATA / "mobilenet_v1_0.25_128_quant.tflite", path)
    return path


def _classify(cli, path):
    return cli("classify", str(path), str(DATA / "cat.bmp"), "--top", "1", "--json")


def test_a_renamed_file_without_a_card_is_refused_with_what_to_do(cli, renamed):
    code, _, err = _classify(cli, renamed)
    assert code == 2 and "my_model.tflite" in err and "v1_0.25_128.tflite" in err and "entry=" not in err


def test_a_card_names_the_catalog_model(cli, renamed):
    entry = load_catalog().get(MODEL)
    write_card(renamed, entry, entry)
    assert json.loads(card_path(renamed).read_text()) == {"kind": CARD_KIND, "model": MODEL}
    code, out, err = _classify(cli, renamed)
    assert code == 0, err
    assert json.loads(out)[0]["predictions"][0]["label"] in {"tabby, tabby cat", "tiger cat", "Egyptian cat"}


def test_a_fine_tuned_card_gives_the_files_own_classes(cli, renamed):
    import dataclasses

    base = load_catalog().get(MODEL)
    own = dataclasses.replace(base, id="mine", labels=tuple(f"c{i}" for i in range(1001)), num_classes=1001)
    write_card(renamed, own, base)
    code, out, err = _classify(cli, renamed)
    assert code == 0, err
    assert json.loads(out)[0]["predictions"][0]["label"].startswith("c")


@pytest.mark.parametrize("damage", ["torn", "empty", "not-json-object", "wrong-kind", "unknown-model",
                                    "bad-classes", "bad-base", "symlink", "huge", "folder"])
def test_every_damaged_card_is_one_clear_error_naming_it(cli, renamed, tmp_path, damage):
    card = card_path(renamed)
    entry = load_catalog().get(MODEL)
    good = {"kind": CARD_KIND, "model": MODEL}
    if damage == "torn":
        card.write_text(json.dumps(good)[:-5])
    elif damage == "empty":
        card.write_text("")
    elif damage == "not-json-object":
        card.write_text("[1, 2]")
    elif damage == "wrong-kind":
        card.write_text(json.dumps({**good, "kind": "something-else"}))
    elif damage == "unknown-model":
        card.write_text(json.dumps({**good, "model": "v9_nope"}))
    elif damage == "bad-classes":
        card.write_text(json.dumps({**good, "base": entry.to_dict(), "classes": [1, 2]}))
    elif damage == "bad-base":
        card.write_text(json.dumps({**good, "base": {"id": "x"}, "classes": ["a"]}))
    elif damage == "symlink":
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps(good))
        os.symlink(target, card)
    elif damage == "huge":
        card.write_text(json.dumps({**good, "pad": "x" * (5 * 1024 * 1024)}))
    elif damage == "folder":
        card.mkdir()
    code, out, err = _classify(cli, renamed)
    assert code in (1, 2) and out == "", err
    assert card.name in err and "Traceback" not in err and len(err.splitlines()) <= 4, err
