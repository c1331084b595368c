"""The Python API as a notebook user meets it: discoverable names, typed catalog queries,
a light import, and the version in what we send to servers."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import zoo
from zoo.errors import UsageError

CATALOG = zoo.load_catalog(with_profile=False)


def test_dir_lists_the_lazy_functions_without_importing_them():
    code = ("import sys, zoo; names = dir(zoo); "
            "assert {'fetch', 'restore', 'classify', 'bench', 'load_catalog', 'Catalog'} <= set(names), names; "
            "heavy = {'requests', 'numpy', 'tensorflow'} & set(sys.modules); assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert callable(zoo.fetch) and callable(zoo.restore)


def test_list_matches_patterns_in_natural_order():
    quant_v2 = CATALOG.list("v2_*_quant")
    assert quant_v2[:3] == ["v2_0.35_96_quant", "v2_0.35_128_quant", "v2_0.35_160_quant"]
    assert all(i.startswith("v2_") and i.endswith("_quant") for i in quant_v2)
    assert len(quant_v2) == sum(e.family == "v2" and e.quantized for e in CATALOG)
    assert CATALOG.list("V1_1.0_2??") == ["v1_1.0_224"]           # case-insensitive, ? is one char
    assert CATALOG.list() == sorted(CATALOG.ids, key=CATALOG.list().index) and len(CATALOG.list()) == len(CATALOG)
    assert CATALOG.list("resnet*") == []
    widths = [float(i.split("_")[1]) for i in CATALOG.list("v1_*_224")]
    assert widths == sorted(widths)                                # 0.25 < 0.5 < 0.75 < 1.0


@pytest.mark.parametrize("method", ["filter", "pick", "frontier"])
def test_catalog_queries_spell_out_their_keywords(method):
    params = inspect.signature(getattr(zoo.Catalog, method)).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert {"family", "quantized", "width", "resolution"} <= set(params)
    with pytest.raises(TypeError):
        getattr(CATALOG, method)(max_mac=10)                        # a typo is an error, not ignored


def test_typed_queries_agree_with_selection():
    from zoo.selection import Filters, frontier, pick

    assert CATALOG.pick(max_macs=300, quantized=True, runners_up=1).chosen.id == \
        pick(CATALOG.entries, Filters(max_macs=300, quantized=True)).chosen.id
    assert CATALOG.filter(family="v3", quantized=False) == Filters(family="v3", quantized=False).apply(CATALOG)
    assert CATALOG.frontier("params", family="v2") == frontier(CATALOG.filter(family="v2"), "params")
    with pytest.raises(UsageError):
        CATALOG.pick(max_macs=-1)


def test_user_agent_carries_the_package_version(fault_server, tmp_path):
    from zoo.download import download

    url = fault_server.add("/ua.bin", b"x" * 1000)
    part = tmp_path / "cache" / ".partial" / "ua@1.part"
    part.parent.mkdir(parents=True)
    download(url, part)
    (record,) = fault_server.stats("/ua.bin").records
    assert record.headers["User-Agent"].startswith(f"mobilenet-zoo/{zoo.__version__} ")


def test_errors_spell_hint_the_way_the_cli_does(cli):
    """`str(error)` in a notebook and the CLI's message use the same `hint:` line."""
    from zoo.errors import UnknownModelError

    with pytest.raises(UnknownModelError) as info:
        CATALOG.get("v1_1.0_22")
    assert "\nhint: " in str(info.value)
    code, _, err = cli("show", "v1_1.0_22")
    assert code == 2 and "hint: " in err and "Hint:" not in err
