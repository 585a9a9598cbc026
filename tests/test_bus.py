from __future__ import annotations

import asyncio

import pytest

from hedgewatch.service.bus import MemoryBus
from hedgewatch.service.errors import ClosedError


async def test_batches_in_order_and_wakes_consumer() -> None:
    bus: MemoryBus[int] = MemoryBus(10)
    got: list[int] = []

    async def consume() -> None:
        while len(got) < 5:
            got.extend(await bus.get_batch(3))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # let the consumer block on the empty bus
    for i in range(5):
        bus.put(i)
    await asyncio.wait_for(task, 2)
    assert got == [0, 1, 2, 3, 4]


async def test_overflow_drops_oldest_and_counts() -> None:
    bus: MemoryBus[int] = MemoryBus(3)
    for i in range(7):
        bus.put(i)
    assert bus.dropped == 4
    assert await bus.get_batch(10) == [4, 5, 6]


async def test_close_drains_then_raises() -> None:
    bus: MemoryBus[int] = MemoryBus(5)
    bus.put(1)
    bus.put(2)
    bus.close()
    bus.put(3)  # after close: dropped and counted, never raises at the producer
    assert bus.dropped == 1
    assert await bus.get_batch(10) == [1, 2]
    with pytest.raises(ClosedError):
        await bus.get_batch(10)


async def test_close_wakes_a_waiting_consumer() -> None:
    bus: MemoryBus[int] = MemoryBus(5)
    waiter = asyncio.create_task(bus.get_batch(1))
    await asyncio.sleep(0)
    bus.close()
    with pytest.raises(ClosedError):
        await asyncio.wait_for(waiter, 2)
