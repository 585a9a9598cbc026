"""The shared ("true") market: one seeded, correlated price path per asset, stepped by a simulated clock.

Pure and deterministic: no asyncio, no wall clock. For a given scenario (seed included) step ``k`` always
yields the same prices, whatever the machine's speed. Each step is GBM with a correlation across assets
(Cholesky of the scenario's correlation matrix) and optional Poisson jumps; regimes change drift, volatility,
funding, open-interest growth and trade volume at scripted simulated times.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from hedgewatch.connectors.simulator.scenario import AssetSpec, Scenario, cholesky

SECONDS_PER_YEAR = 365.0 * 86_400.0
HOUR_MS = 3_600_000


@dataclass
class AssetState:
    """One asset's current parameters (regimes overwrite them) and derivatives baseline."""

    price: float
    drift: float
    volatility: float
    funding_rate: float
    oi_growth_per_hour: float
    spot_basis_bps: float = 0.0  # the perpetual's premium over spot
    volume_factor: float = 1.0  # live trade volume relative to the history's hourly basis
    oi_log: float = 0.0  # accumulated log growth of open interest since start


class PricePath:
    """Correlated GBM with jumps, advanced one tick at a time."""

    def __init__(self, scenario: Scenario, start_ms: int) -> None:
        self.scenario = scenario
        self.names = list(scenario.assets)
        self.start_ms = start_ms
        self.dt_s = scenario.tick_interval_s
        self.step_index = 0
        self._rng = random.Random(f"path:{scenario.seed}")
        self._chol = cholesky(scenario.correlation_matrix())
        self.specs: dict[str, AssetSpec] = dict(scenario.assets)
        self.assets = {
            name: AssetState(spec.price, spec.drift, spec.volatility, spec.funding_rate, 0.0, spec.spot_basis_bps)
            for name, spec in scenario.assets.items()
        }
        self.composites = self._composites()
        self.all_names = self.names + list(self.composites)
        self._regimes = sorted(scenario.regimes, key=lambda r: r.at_s)
        self._next_regime = 0
        self._apply_regimes()
        self.history = {name: self._history(name) for name in self.names}
        for base, units in self.composites.items():
            self.history[base] = [
                sum(q * self.history[a][i] for a, q in units.items())
                for i in range(len(self.history[self.names[0]]))
            ]
        # Recent steps, so a venue with latency (or a lag fault) can quote the path as it was.
        self.recent: deque[tuple[int, dict[str, float]]] = deque(maxlen=max_lag_steps(scenario))
        self._remember()

    def _remember(self) -> None:
        for base, units in self.composites.items():
            self.assets[base].price = sum(q * self.assets[a].price for a, q in units.items())
        self.recent.append((self.now_ms, {n: st.price for n, st in self.assets.items()}))

    def lookback(self, lag_s: float) -> tuple[int, dict[str, float]]:
        """(time, prices) of the path ``lag_s`` simulated seconds ago (the oldest kept when further)."""
        back = min(round(lag_s / self.dt_s), len(self.recent) - 1)
        return self.recent[-1 - back]

    @property
    def now_ms(self) -> int:
        """Simulated epoch milliseconds of the current step."""
        return self.start_ms + round(self.step_index * self.dt_s * 1000)

    @property
    def elapsed_s(self) -> float:
        return self.step_index * self.dt_s

    def price(self, asset: str) -> float:
        return self.assets[asset].price

    def open_interest(self, asset: str) -> float:
        """Whole-market open interest in base units now."""
        return self.specs[asset].open_interest * math.exp(self.assets[asset].oi_log)

    def step(self) -> None:
        """Advance one tick: correlated normal shocks, then jumps, then regimes due at the new time."""
        self.step_index += 1
        dt_y = self.dt_s / SECONDS_PER_YEAR
        z = [self._rng.gauss(0.0, 1.0) for _ in self.names]
        for i, name in enumerate(self.names):
            st = self.assets[name]
            spec = self.scenario.assets[name]
            shock = sum(self._chol[i][k] * z[k] for k in range(i + 1))
            log_ret = (st.drift - 0.5 * st.volatility**2) * dt_y + st.volatility * math.sqrt(dt_y) * shock
            if spec.jumps_per_day > 0 and self._rng.random() < spec.jumps_per_day * self.dt_s / 86_400.0:
                log_ret += self._rng.gauss(spec.jump_mean, spec.jump_std)
            st.price *= math.exp(log_ret)
            st.oi_log += st.oi_growth_per_hour * self.dt_s / 3600.0
        for base in self.composites:
            st = self.assets[base]
            st.oi_log += st.oi_growth_per_hour * self.dt_s / 3600.0
        self._apply_regimes()
        self._remember()

    def _apply_regimes(self) -> None:
        regimes = self._regimes
        while self._next_regime < len(regimes) and regimes[self._next_regime].at_s <= self.elapsed_s:
            reg = regimes[self._next_regime]
            for name in reg.assets or self.all_names:
                st = self.assets[name]
                if reg.drift is not None:
                    st.drift = reg.drift
                if reg.volatility is not None:
                    st.volatility = reg.volatility
                if reg.funding_rate is not None:
                    st.funding_rate = reg.funding_rate
                if reg.oi_growth_per_hour is not None:
                    st.oi_growth_per_hour = reg.oi_growth_per_hour
                if reg.spot_basis_bps is not None:
                    st.spot_basis_bps = reg.spot_basis_bps
                if reg.volume_factor is not None:
                    st.volume_factor = reg.volume_factor
            self._next_regime += 1

    def _composites(self) -> dict[str, dict[str, float]]:
        """Composite indexes (Binance's DEFIUSDT kind) as derived assets: units of each constituent such that
        the index starts at 1000 with the scenario's weights; their perpetual is quoted like any asset."""
        out = {}
        for comp in self.scenario.composite_indexes:
            base = comp.symbol.removesuffix(self.scenario.quote)
            total = sum(comp.weights.values())
            out[base] = {
                a: w / total * 1000.0 / self.scenario.assets[a].price for a, w in comp.weights.items()
            }
            vol = sum(w / total * self.scenario.assets[a].volatility for a, w in comp.weights.items())
            self.specs[base] = AssetSpec(price=1000.0, volatility=vol, open_interest=50_000.0, tick_size=0.1)
            self.assets[base] = AssetState(1000.0, 0.0, vol, self.specs[base].funding_rate, 0.0,
                                           self.specs[base].spot_basis_bps)
        return out

    def _history(self, name: str) -> list[float]:
        """Hourly closes for ``history_days`` before the start, the last one equal to the start price:
        a backward GBM walk with the asset's volatility and the scenario's history drift."""
        spec = self.scenario.assets[name]
        rng = random.Random(f"history:{self.scenario.seed}:{name}")
        n = self.scenario.history_days * 24
        dt_y = 3600.0 / SECONDS_PER_YEAR
        mu = (self.scenario.history_drift - 0.5 * spec.volatility**2) * dt_y
        sd = spec.volatility * math.sqrt(dt_y)
        closes = [spec.price]
        p = spec.price
        for _ in range(n - 1):
            p /= math.exp(mu + sd * rng.gauss(0.0, 1.0))
            closes.append(p)
        closes.reverse()
        return closes

    @property
    def history_end_ms(self) -> int:
        """Open time of the hour holding the start: the last history close belongs to the hour before it."""
        return self.start_ms - self.start_ms % HOUR_MS

    def history_close(self, asset: str, hour_open_ms: int) -> float | None:
        """Close of the history hour opening at ``hour_open_ms``; None outside the history."""
        closes = self.history[asset]
        idx = len(closes) - 1 - (self.history_end_ms - HOUR_MS - hour_open_ms) // HOUR_MS
        if 0 <= idx < len(closes):
            return closes[idx]
        return None


def max_lag_steps(scenario: Scenario) -> int:
    """How many steps of the path to keep: the largest venue latency plus the largest lag fault."""
    latency = max((v.latency_ms / 1000.0 for v in scenario.venues), default=0.0)
    lag = max((f.value or 0.0 for f in scenario.faults if f.kind == "lag"), default=0.0)
    return int((latency + lag) / scenario.tick_interval_s) + 2
