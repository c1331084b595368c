"""`pick` and `frontier` against brute-force re-implementations over random budgets."""

from __future__ import annotations

import math
import random

import pytest

from zoo.catalog import load_catalog
from zoo.errors import NothingFitsError, UsageError
from zoo.catalog.selection import Filters, cost_of, frontier, pick

ENTRIES = list(load_catalog(with_profile=False))
DEVICES = sorted({d for e in ENTRIES for d in e.latency_ms})


def brute_force_pick(entries, f: Filters):
    """Independent restatement of the rules: meet every limit, have a top-1, then best by the tie order."""
    best = None
    for e in entries:
        if f.family and e.family not in ([f.family] if isinstance(f.family, str) else f.family):
            continue
        if f.quantized is not None and e.quantized != f.quantized:
            continue
        if f.max_macs is not None and e.macs_m > f.max_macs:
            continue
        if f.max_params is not None and e.params_m > f.max_params:
            continue
        size = e.params_m * (1 if e.quantized else 4)
        if f.max_size_mb is not None and round(size, 2) > f.max_size_mb:
            continue
        if e.top1 is None:
            continue
        if f.min_top1 is not None and e.top1 < f.min_top1:
            continue
        if f.max_latency_ms is not None:
            ms = e.latency_ms.get(f.device)
            if ms is None or ms > f.max_latency_ms:
                continue
        if best is None:
            best = e
            continue
        if (e.top1 > best.top1
                or (e.top1 == best.top1 and (e.macs_m, e.params_m, e.id) < (best.macs_m, best.params_m, best.id))):
            best = e
    return best


def random_filters(rng: random.Random) -> Filters:
    kwargs = {}
    if rng.random() < 0.6:
        kwargs["max_macs"] = rng.choice([rng.uniform(5, 1000), rng.choice([e.macs_m for e in ENTRIES])])
    if rng.random() < 0.4:
        kwargs["max_params"] = rng.uniform(0.3, 7)
    if rng.random() < 0.4:
        kwargs["max_size_mb"] = rng.uniform(0.3, 25)
    if rng.random() < 0.3:
        kwargs["min_top1"] = rng.uniform(40, 78)
    if rng.random() < 0.3:
        kwargs["device"] = rng.choice(DEVICES)
        kwargs["max_latency_ms"] = rng.uniform(0.5, 150)
    if rng.random() < 0.3:
        kwargs["family"] = rng.choice(["v1", "v2", "v3", "edgetpu"])
    if rng.random() < 0.3:
        kwargs["quantized"] = rng.random() < 0.5
    return Filters(**kwargs)


def test_pick_matches_brute_force_on_random_budgets():
    rng = random.Random(20261125)
    fitted = empty = 0
    for _ in range(3000):
        f = random_filters(rng)
        expected = brute_force_pick(ENTRIES, f)
        if expected is None:
            empty += 1
            with pytest.raises(NothingFitsError):
                pick(ENTRIES, f)
        else:
            fitted += 1
            assert pick(ENTRIES, f).chosen.id == expected.id, f
    assert fitted > 500 and empty > 100  # both branches really exercised


def test_ties_go_to_fewer_macs_then_params_then_id():
    a = ENTRIES[0]
    from dataclasses import replace

    twins = [replace(a, id="b_twin", macs_m=a.macs_m), replace(a, id="a_twin", macs_m=a.macs_m),
             replace(a, id="cheap", macs_m=a.macs_m - 1, params_m=a.params_m + 1)]
    assert pick(twins, Filters()).chosen.id == "cheap"
    assert pick(twins[:2], Filters()).chosen.id == "a_twin"
    same_macs = [replace(a, id="z", params_m=1.0), replace(a, id="y", params_m=2.0)]
    assert pick(same_macs, Filters()).chosen.id == "z"


def test_models_without_top1_are_never_picked():
    f = Filters(family="v2", quantized=True)
    with pytest.raises(NothingFitsError, match="without a published top-1"):
        pick(ENTRIES, f)


def test_nothing_fits_names_nearest_and_limit():
    with pytest.raises(NothingFitsError) as info:
        pick(ENTRIES, Filters(max_macs=10))
    assert "v2_0.35_96" in info.value.message and "> max_macs 10" in info.value.message
    assert "max_macs" in info.value.params


def test_latency_limit_only_considers_models_with_a_figure():
    result = pick(ENTRIES, Filters(max_latency_ms=1000, device="pixel4-edgetpu"))
    assert result.chosen.id == "edgetpu_1.0_224_quant"
    assert result.candidates == 2


@pytest.mark.parametrize("kwargs", [{"max_macs": -1}, {"min_top1": 101}, {"max_latency_ms": 5},
                                    {"family": "v7"}, {"max_params": float("nan")}])
def test_bad_limits(kwargs):
    with pytest.raises(UsageError):
        Filters(**kwargs)


@pytest.mark.parametrize("cost, device", [("macs", None), ("params", None), ("size", None),
                                          ("latency", "pixel1"), ("latency", "pixel3-cpu4")])
def test_frontier_is_pareto_optimal(cost, device):
    front = frontier(ENTRIES, cost, device)
    pool = [e for e in ENTRIES if e.top1 is not None and cost_of(e, cost, device) is not None]
    front_ids = {e.id for e in front}
    for e in pool:
        dominated = any(
            cost_of(o, cost, device) <= cost_of(e, cost, device) and o.top1 >= e.top1
            and (cost_of(o, cost, device) < cost_of(e, cost, device) or o.top1 > e.top1)
            for o in pool)
        if e.id in front_ids:
            assert not dominated, e.id
    # everything not on the frontier is dominated or an exact tie of a frontier point
    for e in pool:
        if e.id not in front_ids:
            assert any(cost_of(o, cost, device) <= cost_of(e, cost, device) and o.top1 >= e.top1
                       for o in front), e.id
    costs = [cost_of(e, cost, device) for e in front]
    assert costs == sorted(costs) and [e.top1 for e in front] == sorted(e.top1 for e in front)
    assert not math.isnan(sum(costs))
