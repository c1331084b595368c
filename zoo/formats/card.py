"""The card beside an exported file (``m.tflite`` -> ``m.tflite.zoo.json``): which model it is.

A file `export` writes has a name the user chose, so its name cannot say which catalog model
it holds, and a fine-tuned model's classes are nowhere in a bare .tflite. The card says it, so
that `classify`, `eval` and `bench` take the file back like any other model. It is read as
untrusted input (``read_state``: size-capped, no links, strict JSON), and a card that names a
model the catalog lacks, or is damaged, is an error naming the card, never a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._util.atomic import DamagedStateFile, atomic_write_json, read_state
from ..catalog.registry import Catalog, Entry
from ..errors import RestoreError, UnknownModelError

CARD_SUFFIX = ".zoo.json"
CARD_KIND = "mobilenet-zoo/exported-model"
_CARD_CAP = 4 * 1024 * 1024  # a base entry and a few thousand class names; far more is not a card


def card_path(model_file: Path) -> Path:
    return Path(model_file).with_name(Path(model_file).name + CARD_SUFFIX)


def card_for(entry: Entry, base_entry: Entry) -> dict[str, Any]:
    """A catalog model's card names it; a fine-tuned model's carries its base and its classes."""
    if entry.labels is None and entry.id == base_entry.id:
        return {"kind": CARD_KIND, "model": entry.id}
    return {"kind": CARD_KIND, "model": entry.id, "base": base_entry.to_dict(), "classes": list(entry.labels or ())}


def write_card(model_file: Path, entry: Entry, base_entry: Entry, conversion: dict[str, Any] | None = None) -> Path:
    """``conversion``: for a converted file, what it came from, the converter and runtime versions,
    and how it agreed with its source (kept for the user; reading the card ignores it)."""
    path = card_path(model_file)
    card = card_for(entry, base_entry)
    if conversion is not None:
        card["conversion"] = conversion
    atomic_write_json(path, card)
    return path


def entries_from_card(model_file: Path, catalog: Catalog) -> tuple[Entry, Entry] | None:
    """(the file's entry, the published entry it started from), or None when it has no card."""
    path = card_path(model_file)
    try:
        card = read_state(path, _CARD_CAP)
    except DamagedStateFile as exc:
        raise RestoreError(f"the card {path} of {Path(model_file).name} {exc.reason}", hint=_REMOVE) from None
    if card is None:
        return None
    if not isinstance(card, dict) or card.get("kind") != CARD_KIND or not isinstance(card.get("model"), str):
        raise RestoreError(f"{path} is not a mobilenet-zoo model card", hint=_REMOVE)
    if "base" not in card:
        try:
            found = catalog.get(card["model"])
        except UnknownModelError:
            raise RestoreError(f"{path} says {Path(model_file).name} is {card['model']!r}, which the catalog "
                               "does not list", hint="use the catalog the file was exported with") from None
        return found, found
    from .finetuned import derived_entry, entry_from_dict

    classes = card.get("classes")
    if not isinstance(card["base"], dict) or not isinstance(classes, list) or not classes \
            or not all(isinstance(c, str) and c for c in classes):
        raise RestoreError(f"{path} has no valid base model and classes", hint=_REMOVE)
    base = entry_from_dict(card["base"], source=str(path))
    return derived_entry(base, card["model"], tuple(classes)), base


_REMOVE = "export the model again, or delete the card and pass a file with its upstream name"
