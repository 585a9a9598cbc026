"""The basket index: weighting, the textbook example, continuity across rebalances."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hedgewatch.service import weights
from hedgewatch.service.index import Basket

CAPS = {"A": 600.0, "B": 300.0, "C": 100.0}
MOVES = {"A": -0.05, "B": 0.10, "C": -0.02}


def _move(scheme: str) -> float:
    basket = Basket()
    for a in CAPS:
        basket.set_price(a, 100.0)
    basket.rebalance(weights.compute(scheme, list(CAPS), market_caps=CAPS), base_level=1000.0)
    for a, mv in MOVES.items():
        basket.set_price(a, 100.0 * (1 + mv))
    return basket.level / 1000.0 - 1.0


def test_textbook_example_cap_weighted_minus_0_2_percent() -> None:
    assert _move("cap") == pytest.approx(-0.002)


def test_textbook_example_equal_weighted_plus_1_percent() -> None:
    assert _move("equal") == pytest.approx(0.01)


def test_level_is_none_until_every_member_is_priced() -> None:
    b = Basket()
    b.set_units({"A": 1.0, "B": 2.0})
    assert b.level is None
    b.set_price("A", 10.0)
    assert b.level is None
    b.set_price("B", 5.0)
    assert b.level == 20.0


# --- weighting schemes --------------------------------------------------------------------------------

caps_st = st.dictionaries(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=4),
    st.floats(1e3, 1e12),
    min_size=1,
    max_size=30,
)


@given(caps=caps_st, cap_ratio=st.floats(0.01, 1.0))
def test_capped_weights_sum_to_one_and_respect_the_cap(caps, cap_ratio) -> None:
    w = weights.capped(caps, cap_ratio)
    assert sum(w.values()) == pytest.approx(1.0)
    if cap_ratio * len(caps) >= 1.0:
        assert max(w.values()) <= cap_ratio * (1 + 1e-9)
    else:  # infeasible cap: the closest feasible answer, equal weights
        assert max(w.values()) == pytest.approx(1 / len(caps))
    # Redistribution is proportional: uncapped members keep their relative order.
    order = sorted(caps, key=caps.__getitem__)
    ws = [w[k] for k in order]
    assert all(a <= b * (1 + 1e-9) for a, b in itertools.pairwise(ws))


def test_capped_redistributes_iteratively() -> None:
    w = weights.capped({"A": 70.0, "B": 20.0, "C": 6.0, "D": 4.0}, 0.3)
    # A capped at 0.3; its excess goes to B, C, D pro rata, which pushes B over the cap in turn.
    assert w["A"] == pytest.approx(0.3) and w["B"] == pytest.approx(0.3)
    assert w["C"] == pytest.approx(0.4 * 0.6) and w["D"] == pytest.approx(0.4 * 0.4)


def test_free_float_and_fixed_weights() -> None:
    w = weights.compute("free_float", ["A", "B"], market_caps={"A": 100, "B": 100}, float_ratios={"A": 0.5})
    assert w == pytest.approx({"A": 1 / 3, "B": 2 / 3})
    fixed = weights.compute("fixed", ["A", "B"], weights={"A": 3, "B": 1})
    assert fixed == pytest.approx({"A": 0.75, "B": 0.25})
    with pytest.raises(weights.WeightingError):
        weights.compute("cap", ["A", "B"], market_caps={"A": 1})


# --- continuity and incremental updates ---------------------------------------------------------------

prices_st = st.floats(1e-4, 1e6)


@given(
    first=st.dictionaries(
        st.sampled_from("ABCDEFGH"), st.tuples(prices_st, st.floats(0.01, 1.0)), min_size=1
    ),
    moves=st.dictionaries(st.sampled_from("ABCDEFGH"), st.floats(0.5, 2.0)),
    new_weights=st.dictionaries(st.sampled_from("ABCDEFGHIJ"), st.floats(0.01, 1.0), min_size=1),
)
def test_level_is_continuous_across_a_rebalance(first, moves, new_weights) -> None:
    b = Basket()
    for a, (p, _) in first.items():
        b.set_price(a, p)
    b.rebalance(weights.fixed(list(first), {a: w for a, (_, w) in first.items()}), 1000.0)
    assert b.level == pytest.approx(1000.0)
    for a, mv in moves.items():
        if a in first:
            b.set_price(a, first[a][0] * mv)
    for a in new_weights:
        if a not in b.prices:
            b.set_price(a, 42.0)
    before = b.level
    b.rebalance(weights.fixed(list(new_weights), new_weights), 1000.0)
    assert b.level == pytest.approx(before, rel=1e-12)
    assert b.weights() == pytest.approx(weights.fixed(list(new_weights), new_weights))


@given(
    st.lists(st.tuples(st.sampled_from("ABCDE"), prices_st), max_size=300),
)
def test_incremental_updates_equal_a_full_recompute(ticks) -> None:
    b = Basket()
    for a in "ABCDE":
        b.set_price(a, 100.0)
    b.rebalance(weights.equal(list("ABCDE")), 1000.0)
    for a, p in ticks:
        b.set_price(a, p)
    incremental = b.level
    full = sum(u * b.prices[a] for a, u in b.units.items()) / b.divisor
    assert incremental == pytest.approx(full, rel=1e-9, abs=1e-9 * max(b.prices.values()))
