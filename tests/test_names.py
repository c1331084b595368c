"""Every spelling people type resolves to the right catalog id."""

from __future__ import annotations

import pytest

from zoo.catalog import load_catalog
from zoo.errors import UnknownModelError
from zoo.catalog.names import normalize, split_release

CATALOG = load_catalog(with_profile=False)


@pytest.mark.parametrize("name, expected", [
    ("v1_1.0_224", "v1_1.0_224"),
    ("1.0_224", "v1_1.0_224"),
    ("MobileNet_v1_1.0_224", "v1_1.0_224"),
    ("mobilenet_v1_1.0_224", "v1_1.0_224"),
    ("MOBILENET_V1_1.0_224", "v1_1.0_224"),
    ("0.50_160", "v1_0.5_160"),
    ("0.5_160", "v1_0.5_160"),
    ("1.0_224_quant", "v1_1.0_224_quant"),
    ("mobilenet_v1_0.25_128_quant.tgz", "v1_0.25_128_quant"),
    ("mobilenet_v2_1.4_224", "v2_1.4_224"),
    ("mobilenetv2_1.0_224", "v2_1.0_224"),
    ("MobileNetV1_0.25_128_quant", "v1_0.25_128_quant"),
    ("mobilenetv3_large_1.0_224", "v3_large_1.0_224"),
    ("quantized_v2_224_140", "v2_1.4_224_quant"),
    ("quantized_v2_96_35", "v2_0.35_96_quant"),
    ("v3-large_224_1.0_float", "v3_large_1.0_224"),
    ("v3-large_224_1.0_uint8", "v3_large_1.0_224_quant"),
    ("v3-small-minimalistic_224_1.0_float", "v3_small_minimalistic_1.0_224"),
    ("mobilenet_edgetpu_224_1.0", "edgetpu_1.0_224_quant"),
    ("  V3_Large_1.0_224  ", "v3_large_1.0_224"),
])
def test_aliases(name, expected):
    assert CATALOG.get(name).id == expected
    assert name in CATALOG


def test_every_id_and_url_stem_resolves_to_itself():
    from zoo.catalog.names import url_stem

    for entry in CATALOG:
        assert CATALOG.get(entry.id) is entry
        for release in entry.releases:
            assert CATALOG.get(url_stem(release.url)) is entry


def test_release_selection():
    entry, release = CATALOG.resolve("v1_1.0_224@2018_02_22")
    assert release.release == "2018_02_22" and "2018_02_22" in release.url
    assert CATALOG.resolve("1.0_224")[1].release == "2018_08_02"
    with pytest.raises(UnknownModelError) as info:
        CATALOG.resolve("v1_1.0_224@2017_01_01")
    assert "v1_1.0_224@2018_02_22" in info.value.suggestions


def test_unknown_name_suggests():
    with pytest.raises(UnknownModelError) as info:
        CATALOG.get("v1_1.0_225")
    assert "v1_1.0_224" in info.value.suggestions
    assert "did you mean" in str(info.value)


def test_normalize_is_idempotent():
    for entry in CATALOG:
        assert normalize(normalize(entry.id)) == normalize(entry.id)
    assert split_release("a@b") == ("a", "b") and split_release("a") == ("a", None)


def test_a_checkpoint_in_its_tarball_folder_names_its_model(tmp_path):
    """Patterns such as ``v2_224_100/model.ckpt-*``: the folder, not the file, says the model."""
    from zoo.errors import UsageError
    from zoo.formats.resolve import locate

    checked = 0
    for entry in CATALOG:
        pattern = entry.files.get("checkpoint", "")
        parts = pattern.split("/")
        if len(parts) < 2 or "*" not in parts[-1]:
            continue
        prefix = tmp_path / entry.id / "/".join(parts).replace("*", "1234")
        prefix.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".index", ".data-00000-of-00001"):
            prefix.with_name(prefix.name + suffix).write_bytes(b"")
        index = prefix.with_name(prefix.name + ".index")  # what a user tab-completes to
        same = [e.id for e in CATALOG if e.files.get("checkpoint") == pattern]
        if len(same) == 1:
            assert locate(index, "ckpt", catalog=CATALOG).entry.id == entry.id
        else:  # the folder does not tell them apart: say so, never guess
            with pytest.raises(UsageError, match="cannot tell which catalog model"):
                locate(index, "ckpt", catalog=CATALOG)
        checked += 1
    assert checked >= 5
    stray = tmp_path / "elsewhere" / "model.ckpt-1234"
    stray.parent.mkdir()
    stray.with_name("model.ckpt-1234.index").write_bytes(b"")
    with pytest.raises(UsageError, match="cannot tell which catalog model"):
        locate(stray.with_name("model.ckpt-1234.index"), "ckpt", catalog=CATALOG)
