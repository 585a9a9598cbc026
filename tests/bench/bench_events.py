"""How to represent a hot-path event: construction and field-read cost of the candidates.

    python -m tests.bench.bench_events

The connector builds one event per frame and the oracle reads a few fields of it, so both costs count.
Compared: a msgspec Struct without GC tracking (what ``service.events`` uses), a plain one, a slotted
dataclass, a frozen slotted dataclass, a NamedTuple, a plain dict and a pydantic model. Medians of several
runs, ns per operation.
"""

from __future__ import annotations

import statistics
import timeit
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
from pydantic import BaseModel

from hedgewatch.service.events import Quote

ARGS = ("binanceusdm", "BTC", "BTCUSDT", 65000.1, 65000.2, 1.7e9, 1.7e9)


@dataclass(slots=True)
class QuoteSlots:
    exchange: str
    asset: str
    instrument: str
    bid: float
    ask: float
    ts_exchange: float
    ts_recv: float
    quote: str = "USDT"
    market: str = "perp"


class QuoteNT(NamedTuple):
    exchange: str
    asset: str
    instrument: str
    bid: float
    ask: float
    ts_exchange: float
    ts_recv: float
    quote: str = "USDT"
    market: str = "perp"


@dataclass(slots=True, frozen=True)
class QuoteFrozen:
    exchange: str
    asset: str
    instrument: str
    bid: float
    ask: float
    ts_exchange: float
    ts_recv: float
    quote: str = "USDT"
    market: str = "perp"


class QuoteStruct(msgspec.Struct):
    exchange: str
    asset: str
    instrument: str
    bid: float
    ask: float
    ts_exchange: float
    ts_recv: float
    quote: str = "USDT"
    market: str = "perp"


class QuoteModel(BaseModel):
    exchange: str
    asset: str
    instrument: str
    bid: float
    ask: float
    ts_exchange: float
    ts_recv: float
    quote: str = "USDT"
    market: str = "perp"


def as_dict(*a: object) -> dict[str, object]:
    return {"exchange": a[0], "asset": a[1], "instrument": a[2], "bid": a[3], "ask": a[4],
            "ts_exchange": a[5], "ts_recv": a[6], "quote": "USDT", "market": "perp"}


def model(*a: object) -> QuoteModel:
    return QuoteModel(exchange=a[0], asset=a[1], instrument=a[2], bid=a[3], ask=a[4], ts_exchange=a[5],
                      ts_recv=a[6])


CANDIDATES = {
    "Struct, gc=False (used)": Quote,
    "Struct": QuoteStruct,
    "slotted dataclass": QuoteSlots,
    "NamedTuple": QuoteNT,
    "frozen slotted dataclass": QuoteFrozen,
    "dict": as_dict,
    "pydantic model": model,
}


def per_op_ns(stmt: str, env: dict[str, object], number: int, repeat: int = 7) -> float:
    times = timeit.repeat(stmt, globals=env, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e9


def main() -> None:
    print(f"{'representation':<28} {'build ns':>9} {'read ns':>9}")
    for name, make in CANDIDATES.items():
        ev = make(*ARGS)
        read = "e['bid'] + e['ask'] + e['ts_recv']" if isinstance(ev, dict) else "e.bid + e.ask + e.ts_recv"
        n = 20_000 if name == "pydantic model" else 200_000
        build = per_op_ns("make(*ARGS)", {"make": make, "ARGS": ARGS}, n)
        reading = per_op_ns(read, {"e": ev}, 1_000_000)
        print(f"{name:<28} {build:>9.0f} {reading:>9.0f}")


if __name__ == "__main__":
    main()
