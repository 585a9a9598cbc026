"""Scenario files: what the simulator plays, with a seed.

A scenario is YAML validated by these frozen pydantic models (unknown keys are errors). Errors name the
file, line and field the same way ``service.config`` does, using its YAML locator. The format is described
in ``connectors/simulator/README.md``; the bundled files live in ``scenarios/``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hedgewatch.service.errors import ConfigError, Problem
from hedgewatch.service.yamlfile import load_mapping, validate

SCENARIOS = Path(__file__).parent / "scenarios"
DEFAULT_SCENARIO = SCENARIOS / "default.yaml"

Protocol = Literal["binanceusdm", "binancecoinm", "bybit", "okx"]
FaultKind = Literal[
    "drop",
    "stall",
    "stall_channel",
    "garbage",
    "absurd_price",
    "lag",
    "manipulate",
    "disconnect",
]

# Channel cadences in messages per second per symbol, as the venues publish them (configurable per venue).
DEFAULT_RATES: dict[str, dict[str, float]] = {
    "binanceusdm": {
        "bookTicker": 10.0,
        "aggTrade": 5.0,
        "markPrice": 1.0,
        "kline": 4.0,
        "ticker": 0.5,
        "depth": 4.0,
        "compositeIndex": 1.0,
    },
    # Binance COIN-M (dstream): the same streams, coin-margined <A>USD_PERP contracts
    "binancecoinm": {
        "bookTicker": 10.0,
        "aggTrade": 5.0,
        "markPrice": 1.0,
        "kline": 4.0,
        "ticker": 0.5,
        "depth": 4.0,
    },
    "bybit": {"tickers": 10.0, "publicTrade": 5.0, "kline": 1.0, "orderbook": 10.0},
    "okx": {
        "tickers": 10.0,
        "mark-price": 1.0,
        "index-tickers": 1.0,
        "funding-rate": 1.0 / 30,
        "open-interest": 1.0 / 3,
        "trades": 5.0,
        "candle": 1.0,
    },
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetSpec(_Model):
    """One asset's shared ("true") path: GBM with optional jumps, plus its derivatives baseline."""

    price: float = Field(gt=0)
    volatility: float = Field(default=0.6, ge=0, description="annualized")
    drift: float = Field(default=0.0, description="annualized log drift")
    jumps_per_day: float = Field(default=0.0, ge=0)
    jump_std: float = Field(default=0.02, ge=0, description="std of the log jump size")
    jump_mean: float = 0.0
    open_interest: float = Field(default=10_000.0, gt=0, description="base units, whole market")
    funding_rate: float = Field(default=0.0001, description="per funding interval")
    funding_interval_h: int = Field(default=8, gt=0)
    # The perpetuals' premium over the spot market (the basis): each venue quotes its spot pair at the
    # path price divided by ``1 + spot_basis_bps * 1e-4``, its perpetual at the path price.
    spot_basis_bps: float = Field(default=5.0, gt=-1000, lt=1000)
    okx_ct_val: float = Field(default=0.01, gt=0, description="OKX contract value in base units")
    tick_size: float = Field(default=0.1, gt=0)
    qty_step: float = Field(default=0.001, gt=0)
    # Supply, for the market-cap endpoint: market cap = path price x circulating supply.
    circulating_supply: float = Field(default=1_000_000.0, gt=0, description="units")
    total_supply: float | None = Field(default=None, gt=0, description="units; None = circulating")
    max_supply: float | None = Field(default=None, gt=0, description="units; None = uncapped")

    @model_validator(mode="after")
    def _check_supply(self) -> AssetSpec:
        if self.total_supply is not None and self.total_supply < self.circulating_supply:
            raise ValueError("total_supply is below circulating_supply")
        if self.max_supply is not None and self.max_supply < (self.total_supply or self.circulating_supply):
            raise ValueError("max_supply is below total_supply")
        return self


class CompositeIndexSpec(_Model):
    """A Binance composite-index perpetual (e.g. ``DEFIUSDT``): constituents and their weights."""

    symbol: str
    weights: dict[str, float]


class VenueSpec(_Model):
    """One simulated venue: a protocol, a listening port, and how it deviates from the shared path."""

    name: str
    protocol: Protocol
    port: int = Field(default=0, ge=0, le=65535)
    noise_bps: float = Field(default=1.0, ge=0)
    bias_bps: float = 0.0
    spread_bps: float = Field(default=1.0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    funding_offset: float = 0.0
    oi_share: float = Field(default=0.33, gt=0)
    assets: tuple[str, ...] | None = None
    rates: dict[str, float] = Field(default_factory=dict, description="channel -> messages/s per symbol")
    ping_interval_s: float | None = Field(default=None, description="server pings; None = venue default")
    pong_timeout_s: float = Field(default=600.0, gt=0)
    idle_timeout_s: float | None = Field(default=None, description="drop a silent client; None = default")
    max_connection_age_s: float = Field(default=86_400.0, gt=0)
    max_incoming_per_s: int = Field(default=10, gt=0, description="Binance only")
    inverse: bool = Field(default=False, description="coin-margined contracts: OKX <A>-USD-SWAP (ctVal in USD), "
                          "Bybit inverse <A>USD (1 USD a contract)")

    @model_validator(mode="after")
    def _check(self) -> VenueSpec:
        unknown = set(self.rates) - set(DEFAULT_RATES[self.protocol])
        if unknown:
            known = ", ".join(DEFAULT_RATES[self.protocol])
            raise ValueError(
                f"unknown channel(s) {', '.join(sorted(unknown))} for {self.protocol} (known: {known})"
            )
        return self

    def rate(self, channel: str) -> float:
        return self.rates.get(channel, DEFAULT_RATES[self.protocol].get(channel, 1.0))


class Regime(_Model):
    """From ``at_s`` (simulated seconds since start) on, override the path and derivatives parameters of
    the named assets (all when empty). Unset values keep what the previous regime set."""

    at_s: float = Field(ge=0)
    assets: tuple[str, ...] = ()
    drift: float | None = None
    volatility: float | None = Field(default=None, ge=0)
    funding_rate: float | None = None
    oi_growth_per_hour: float | None = None
    spot_basis_bps: float | None = Field(default=None, gt=-1000, lt=1000)
    volume_factor: float | None = Field(default=None, ge=0, description="live trade volume x the usual")


class Fault(_Model):
    """A fault on one venue at ``at_s`` simulated seconds, lasting ``duration_s`` where that applies.

    drop: abort every connection (no close frame). disconnect: close every connection with a close frame.
    stall: stop sending data (sockets stay open, pings answered). stall_channel: stop one ``channel``.
    garbage: send ``count`` non-JSON frames. absurd_price: quote ``value`` x the price for ``count`` frames.
    lag: add ``value`` seconds of latency. manipulate: quote ``1 + value`` x the price (e.g. 0.5 = +50%).
    """

    at_s: float = Field(ge=0)
    venue: str
    kind: FaultKind
    duration_s: float = Field(default=0.0, ge=0)
    channel: str | None = None
    asset: str | None = None
    value: float | None = None
    count: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Fault:
        if self.kind == "stall_channel" and not self.channel:
            raise ValueError("stall_channel needs a channel")
        if self.kind in ("lag", "manipulate") and self.value is None:
            raise ValueError(f"{self.kind} needs a value")
        if self.kind in ("stall", "stall_channel", "lag", "manipulate") and self.duration_s <= 0:
            raise ValueError(f"{self.kind} needs a positive duration_s")
        return self


class Scenario(_Model):
    """Everything the simulator plays: the seed, the assets' shared path, the venues and the script."""

    seed: int = 1
    start_time_ms: int | None = Field(default=None, description="simulated start; None = wall clock")
    speed: float = Field(default=1.0, gt=0, description="simulated seconds per wall second")
    tick_interval_s: float = Field(default=0.1, gt=0)
    history_days: int = Field(default=60, ge=1, le=1000)
    history_drift: float = Field(default=0.0, description="annualized drift of the generated history")
    assets: dict[str, AssetSpec]
    correlation: float = Field(default=0.6, gt=-1, lt=1, description="pairwise, unless overridden")
    correlations: dict[str, float] = Field(default_factory=dict, description='"BTC/ETH": 0.8')
    quote: str = "USDT"
    composite_indexes: tuple[CompositeIndexSpec, ...] = ()
    venues: tuple[VenueSpec, ...]
    regimes: tuple[Regime, ...] = ()
    faults: tuple[Fault, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if not self.assets:
            raise ValueError("at least one asset is required")
        if not self.venues:
            raise ValueError("at least one venue is required")
        names = [v.name for v in self.venues]
        if len(set(names)) != len(names):
            raise ValueError("venue names must be distinct")
        for comp in self.composite_indexes:
            unknown = set(comp.weights) - set(self.assets)
            if unknown:
                raise ValueError(
                    f"composite {comp.symbol} weighs unknown assets: {', '.join(sorted(unknown))}"
                )
        for v in self.venues:
            unknown = set(v.assets or ()) - set(self.assets) - set(self.composite_bases())
            if unknown:
                raise ValueError(f"venue {v.name} quotes unknown assets: {', '.join(sorted(unknown))}")
        self._check_faults(names)
        for pair in self.correlations:
            a, _, b = pair.partition("/")
            if a not in self.assets or b not in self.assets:
                raise ValueError(f"correlation {pair!r} names an unknown asset")
        cholesky(self.correlation_matrix())
        return self

    def _check_faults(self, venues: list[str]) -> None:
        for f in self.faults:
            if f.venue not in venues:
                raise ValueError(f"fault at {f.at_s}s names unknown venue {f.venue!r}")
            protocol = self.venue(f.venue).protocol
            if f.channel is not None and f.channel not in DEFAULT_RATES[protocol]:
                raise ValueError(f"fault at {f.at_s}s: {protocol} has no channel {f.channel!r}")

    def correlation_matrix(self) -> list[list[float]]:
        names = list(self.assets)
        m = [[1.0 if i == j else self.correlation for j in range(len(names))] for i in range(len(names))]
        for pair, rho in self.correlations.items():
            a, _, b = pair.partition("/")
            i, j = names.index(a), names.index(b)
            m[i][j] = m[j][i] = rho
        return m

    def composite_bases(self) -> list[str]:
        """The base names of the composite indexes (``DEFIUSDT`` -> ``DEFI``)."""
        return [c.symbol.removesuffix(self.quote) for c in self.composite_indexes]

    def venue_assets(self, name: str) -> tuple[str, ...]:
        """What a venue quotes: its ``assets``, else every asset (and, on Binance, the composites)."""
        v = self.venue(name)
        if v.assets:
            return v.assets
        extra = tuple(self.composite_bases()) if v.protocol == "binanceusdm" else ()
        return tuple(self.assets) + extra

    def venue(self, name: str) -> VenueSpec:
        for v in self.venues:
            if v.name == name:
                return v
        raise KeyError(name)


def cholesky(m: list[list[float]]) -> list[list[float]]:
    """Lower-triangular L with L L^T = m; ValueError when m is not positive definite."""
    n = len(m)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = m[i][j] - sum(low[i][k] * low[j][k] for k in range(j))
            if i == j:
                if s <= 0:
                    raise ValueError("the correlation matrix is not positive definite")
                low[i][j] = math.sqrt(s)
            else:
                low[i][j] = s / low[j][j]
    return low


def parse_scenario(text: str, file: str = "<scenario>") -> Scenario:
    """Parse and validate scenario text; raises ConfigError listing every problem with file and line."""
    return validate(Scenario, load_mapping(text, file, "a scenario"), file)


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load a scenario file; ``None`` loads the bundled default (three venues, one per protocol)."""
    p = Path(path) if path is not None else DEFAULT_SCENARIO
    if not p.exists() and not p.is_absolute():
        # a bundled scenario by its name, e.g. "faults" or "faults.yaml"
        for bundled in (SCENARIOS / p, SCENARIOS / f"{p}.yaml"):
            if bundled.is_file():
                p = bundled
                break
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([Problem(str(p), None, None, "", f"cannot read: {exc.strerror}")]) from exc
    return parse_scenario(text, str(p))
