"""Read-only venue balances through ccxt, with a fake exchange standing in for the venue."""

from __future__ import annotations

from typing import Any

import pytest

from hedgewatch.service.balances import fetch_balances
from hedgewatch.service.config import BalancesConfig, PortfolioConfig
from hedgewatch.service.errors import FeedError, SecretError
from hedgewatch.service.hedge import HedgeBook

ENV = {"HEDGEWATCH_BALANCES_API_KEY": "key-123", "HEDGEWATCH_BALANCES_SECRET": "s3cret-xyz"}


class FakeExchange:
    def __init__(self, params: dict[str, Any], fail: bool = False) -> None:
        self.params = params
        self.fail = fail
        self.closed = False

    async def fetch_balance(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("401 for apiKey=key-123 signature s3cret-xyz")
        return {"total": {"BTC": 1.5, "ETH": 10.0, "DOGE": 0.0, "USDT": 2.0}}

    async def fetch_positions(self, symbols: list[str]) -> list[dict[str, Any]]:
        return [{"symbol": symbols[0], "contracts": 3.0, "side": "short"}]

    async def close(self) -> None:
        self.closed = True


async def test_reads_holdings_and_the_signed_position() -> None:
    made: list[FakeExchange] = []

    def factory(exchange_id: str, params: dict[str, Any]) -> FakeExchange:
        made.append(FakeExchange(params))
        return made[-1]

    cfg = BalancesConfig(exchange="binanceusdm", position_symbol="BTCDOM/USDT:USDT", min_units=1.0)
    got = await fetch_balances(cfg, ENV, factory)
    assert got.holdings == {"BTC": 1.5, "ETH": 10.0, "USDT": 2.0}
    assert got.position_contracts == -3.0
    assert made[0].params["apiKey"] == "key-123" and made[0].closed
    book = HedgeBook("HW", PortfolioConfig(multiplier=1, lot_size=1))
    book.set_holdings(got.holdings)
    book.set_position(got.position_contracts)
    s = book.size({"index": "HW", "level": 100.0, "constituents": {"BTC": {"price": 100.0},
                                                                    "ETH": {"price": 10.0},
                                                                    "USDT": {"price": 1.0}}}, 0.5, 0)
    assert s is not None and s.portfolio_value_usd == 252.0 and s.position_contracts == -3.0


async def test_errors_never_carry_the_secrets() -> None:
    fake = FakeExchange({}, fail=True)
    with pytest.raises(FeedError) as info:
        await fetch_balances(BalancesConfig(exchange="okx"), ENV, lambda i, p: fake)
    assert str(info.value) == "okx: fetch_balance failed (RuntimeError)"
    assert info.value.__cause__ is None and info.value.__suppress_context__ and fake.closed
    with pytest.raises(SecretError, match="HEDGEWATCH_BALANCES_SECRET is not set"):
        await fetch_balances(BalancesConfig(exchange="okx"), {"HEDGEWATCH_BALANCES_API_KEY": "k"},
                             lambda i, p: fake)
