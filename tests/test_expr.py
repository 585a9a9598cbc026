"""The safe expression compiler: what it accepts, what it refuses (with positions), and how it evaluates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hedgewatch.rules.expr import ExprError, compile_expr
from hedgewatch.rules.signals import SignalBook


def _compile(src: str):
    return compile_expr(src, SignalBook("HW"))


@pytest.mark.parametrize(
    ("src", "pos", "message"),
    [
        ("price.real > 1", (1, 1), "'price.real' is not allowed"),
        ("price > ", (1, 9), "syntax error"),
        ("pric > 3", (1, 1), "unknown signal 'pric' (did you mean 'price'?)"),
        ("price + true > 1", (1, 9), "'+' needs a number, got bool 'true'"),
        ("price > 1 and 2", (1, 15), "'and' needs a bool, got number '2'"),
        ("price > contango", (1, 9), "cannot compare number 'price' with bool 'contango'"),
        ('sma(50, "1q") > 1', (1, 1), "sma(): not a duration: '1q'"),
        ('price > level("R9")', (1, 9), "level(): unknown level 'R9'"),
        ('__import__("os")', (1, 1), "unknown function '__import__'"),
        ("price ** 2 > 1", (1, 1), "the operator '**' is not allowed"),
        ("price", (1, 1), "must be a bool"),
        ('price > sma(n, "1d")', (1, 13), "must be literal"),
        ("price[0] > 1", (1, 1), "is not allowed"),
        ("[x for x in price] == 1", (1, 1), "is not allowed"),
        ("(lambda: 1)() > 0", (1, 1), "cannot be called"),
        ("price > 1 / 0", (1, 13), "division by zero"),
        ("price\n  > sma(50, 7)", (2, 5), "the timeframe must be a string"),
        ("ath < 'x'", (1, 7), "a string ('x') is only allowed"),
        ("sma > 3", (1, 1), "sma is a function, call it"),
        ("price() > 3", (1, 1), "'price' is a signal, not a function"),
        ("max(price) > 3", (1, 1), "max() takes 2 to 16 arguments, got 1"),
        ("price > sma(50, '1d', x=1)", (1, 23), "positional arguments only"),
    ],
)
def test_refused_with_position(src: str, pos: tuple[int, int], message: str) -> None:
    with pytest.raises(ExprError) as info:
        _compile(src)
    assert (info.value.line, info.value.column) == pos
    assert message in info.value.message


def test_size_is_bounded() -> None:
    with pytest.raises(ExprError, match="too large"):
        _compile(" + ".join(["price"] * 300) + " > 1")
    with pytest.raises(ExprError, match="longer than"):
        _compile("price > " + "1" * 5000)


def test_evaluates_and_lists_inputs() -> None:
    c = _compile('price < sma(50, "1d") * 0.99 and (funding < 0 or not contango)')
    assert c.keys == ("price", "sma_50_1d", "funding_rate_8h", "contango")
    env = {"price": 90.0, "sma_50_1d": 100.0, "funding_rate_8h": 0.0001, "contango": False}
    assert c.fn(env) is True
    assert c.value_fn is not None and c.value_fn(env) == 90.0
    assert c.fn({**env, "contango": True}) is False


def test_crossings_remember_the_previous_evaluation() -> None:
    c = _compile('crossed_above(price, level("R1")) or crossed_below(price, 10)')
    seq = [(100, 105, False), (106, 105, True), (107, 105, False), (104, 105, False), (9, 105, True)]
    assert [c.fn({"price": float(p), "level_R1": float(r)}) for p, r, _ in seq] == [w for *_, w in seq]


def test_conditional_and_chained_comparison() -> None:
    c = _compile("1 < (price if contango else -price) <= 5")
    assert c.fn({"price": 3.0, "contango": True}) is True
    assert c.fn({"price": 3.0, "contango": False}) is False


@given(st.floats(-1e9, 1e9), st.floats(-1e9, 1e9), st.floats(1e-9, 1e9))
def test_arithmetic_matches_python(a: float, b: float, c: float) -> None:
    e = _compile("(price - ath) / atl * 2 + abs(basis) > min(price, ath) - max(1, basis)")
    env = {"price": a, "ath": b, "atl": c, "basis": a - b}
    assert e.fn(env) == ((a - b) / c * 2 + abs(a - b) > min(a, b) - max(1.0, a - b))


def test_crossings_are_not_short_circuited() -> None:
    c = _compile("contango and crossed_above(price, 10)")
    seq = [(5.0, False), (11.0, False), (12.0, True)]
    # the crossing at 11 happened while contango was false; at 12 nothing crosses any more
    assert [c.fn({"price": p, "contango": k}) for p, k in seq] == [False, False, False]
    d = _compile("crossed_below(price, 10) if contango else false")
    assert [d.fn({"price": p, "contango": k}) for p, k in [(11.0, False), (9.0, False), (8.0, True)]] == [
        False, False, False]
