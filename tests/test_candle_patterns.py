"""Candlestick patterns (bullish/bearish engulfing, doji, hammer, shooting star) on hand-built candles, as
functions and as signals in rule expressions on any timeframe."""

from __future__ import annotations

import pytest

from hedgewatch.rules.candles import Bar
from hedgewatch.rules.expr import ExprError, compile_expr
from hedgewatch.rules.indicators import candle_pattern
from hedgewatch.rules.signals import SignalBook
from hedgewatch.service.events import Candle

H = 3600


def bar(o: float, h: float, low: float, c: float, ts: float = 0.0) -> Bar:
    return Bar(ts, o, h, low, c, 1.0)


RED = bar(105, 106, 99, 100)  # a bearish bar, body 100..105
GREEN = bar(100, 106, 99, 105)


@pytest.mark.parametrize(("name", "candle", "prev", "want"), [
    # bullish engulfing: after a bearish bar, a bullish body covering its body
    ("bullish_engulfing", bar(99.5, 107, 99, 106), RED, True),
    ("bullish_engulfing", bar(100, 107, 99, 106), RED, True),  # opening at the close, closing above the open
    ("bullish_engulfing", bar(101, 107, 99, 106), RED, False),  # opens inside the body: does not cover it
    ("bullish_engulfing", bar(99, 107, 98, 104), RED, False),  # closes inside the body
    ("bullish_engulfing", bar(99, 107, 98, 106), GREEN, False),  # the bar before is not bearish
    ("bullish_engulfing", bar(99, 107, 98, 106), None, None),  # no bar before: not known
    # bearish engulfing: the mirror
    ("bearish_engulfing", bar(105.5, 106, 98, 99), GREEN, True),
    ("bearish_engulfing", bar(104, 106, 98, 99), GREEN, False),
    ("bearish_engulfing", bar(105.5, 106, 98, 99), RED, False),
    # doji: body at most 10 % of the range
    ("doji", bar(100, 105, 95, 100.9), None, True),
    ("doji", bar(100, 105, 95, 101.1), None, False),
    ("doji", bar(100, 100, 100, 100), None, False),  # no range: no pattern
    # hammer: lower shadow at least twice the body, upper shadow at most 10 % of the range
    ("hammer", bar(100, 101, 94, 100.9), None, True),  # body 0.9, lower 6, upper 0.1 of 7
    ("hammer", bar(100.9, 101, 94, 100), None, True),  # a red hammer is a hammer
    ("hammer", bar(100, 102, 94, 100.9), None, False),  # upper shadow 1.1 of 8: too long
    ("hammer", bar(100, 101.2, 99, 101.2), None, False),  # lower shadow 1 < twice the body 1.2
    # shooting star: the mirror, upper shadow long, lower shadow short
    ("shooting_star", bar(100.9, 107, 100, 100), None, True),
    ("shooting_star", bar(100, 107, 99, 100.9), None, False),  # lower shadow 1 of 8: too long
    ("shooting_star", bar(100, 104, 100, 102), None, False),  # upper shadow 2 = the body: not twice
])
def test_pattern_definitions(name: str, candle: Bar, prev: Bar | None, want: bool | None) -> None:
    assert candle_pattern(name, candle, prev) is want


def kline(ts: float, o: float, h: float, low: float, c: float, tf: int = H, closed: bool = True) -> Candle:
    return Candle("binanceusdm", "HW", "HW", tf, ts, o, h, low, c, 1.0, closed, ts + tf, ts + tf)


def test_patterns_are_conditions_in_rule_expressions_on_any_timeframe() -> None:
    b = SignalBook("HW")
    rule = compile_expr('bullish_engulfing("1h") and price > sma(2, "1h")', b)
    star = compile_expr('shooting_star("4h")', b)
    doji_now = compile_expr('doji("1h", 0)', b)
    earlier = compile_expr('bearish_engulfing("1h", 2)', b)
    assert rule.keys == ("bullish_engulfing_1h_1", "price", "sma_2_1h")
    with pytest.raises(ExprError):  # a condition, not a number
        compile_expr('hammer("1h") > 0', SignalBook("HW"))
    b.on_candle(kline(0, 100.9, 107, 100, 100, tf=4 * H))  # a 4h shooting star (its own kline wins)
    for k in (kline(0, 100, 106, 99, 105), kline(H, 105.5, 106, 98, 99),  # bearish engulfing at 1h
              kline(2 * H, 105, 106, 99, 100), kline(3 * H, 99.5, 107, 99, 106)):  # bullish engulfing
        b.on_candle(k)
    env = b.update({"level": 106.5, "ts": 4 * H + 60}, 4 * H + 60)
    assert env["bullish_engulfing_1h_1"] is True and rule.fn(env) is True
    assert env["bearish_engulfing_1h_2"] is False and earlier.fn(env) is False
    assert star.fn(env) is True
    # the forming bar: one tick so far (open = high = low = close) has no range, so no doji
    assert doji_now.fn(env) is False
    env = b.update({"level": 110.0, "ts": 4 * H + 120}, 4 * H + 120)
    env = b.update({"level": 106.55, "ts": 4 * H + 180}, 4 * H + 180)  # range 3.5, body 0.05: a doji forming
    assert doji_now.fn(env) is True
    # an hour later the engulfing bar is two bars back; the last closed is the doji
    env = b.update({"level": 106.0, "ts": 5 * H + 1}, 5 * H + 1)
    assert env["bullish_engulfing_1h_1"] is False and env["doji_1h_0"] is False


def test_a_pattern_without_bars_is_unavailable() -> None:
    b = SignalBook("HW")
    compile_expr('hammer("15m")', b)
    env = b.update({"level": 100.0, "ts": 10.0}, 10.0)
    assert env["hammer_15m_1"] is None
    assert b.history_needed() == {"": {900: 3}}
