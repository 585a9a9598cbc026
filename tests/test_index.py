"""The basket index: weighting, the textbook example, continuity across rebalances."""

from __future__ import annotations

import pytest

from service import weights
from service.index import Basket

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
