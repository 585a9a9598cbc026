"""The bounded in-process bus between connectors and the pricing core.

Overflow policy: **drop oldest**. Market data is a stream of states, so when the consumer falls behind the
newest tick is worth more than the oldest; a dropped tick is counted (``hedgewatch_queue_dropped_total``)
and the next tick of the same instrument supersedes it. Feed status events ride the same bus and can be
dropped the same way: a connector re-emits its state on every transition, and the oracle's staleness rule
does not depend on them. Alerts never travel here (they have their own never-drop path).

The interface is two calls, ``put`` (producer side, synchronous, never blocks, never raises) and
``get_batch`` (consumer side, async), so a Redis Streams implementation can replace it to run the stages in
separate processes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, Protocol, TypeVar

from hedgewatch.service.errors import ClosedError

T = TypeVar("T")


class Bus(Protocol[T]):
    def put(self, item: T) -> None: ...

    async def get_batch(self, max_items: int) -> list[T]: ...


class MemoryBus(Generic[T]):
    """A bounded deque with drop-oldest overflow and a wake-up per batch rather than per item."""

    def __init__(self, capacity: int, name: str = "bus") -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.name = name
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0
        self.put_total = 0
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> None:
        """Enqueue without blocking; when full, drop the oldest item and count it. After ``close`` the
        item is dropped and counted too: intake has stopped, the producer need not know."""
        items = self._items
        if self._closed:
            self.dropped += 1
            return
        if len(items) >= self.capacity:
            items.popleft()
            self.dropped += 1
        items.append(item)
        self.put_total += 1
        if not self._wakeup.is_set():
            self._wakeup.set()

    async def get_batch(self, max_items: int = 1024) -> list[T]:
        """Wait until at least one item is queued and return up to ``max_items`` of them, oldest first.
        After ``close`` the remaining items are still returned (drain); once empty, raises ClosedError."""
        items = self._items
        while not items:
            if self._closed:
                raise ClosedError(f"{self.name} is closed")
            self._wakeup.clear()
            await self._wakeup.wait()
        n = min(len(items), max_items)
        self.high_water = max(self.high_water, len(items))
        if n == len(items):
            batch = list(items)
            items.clear()
        else:
            batch = [items.popleft() for _ in range(n)]
        return batch

    def clear(self) -> int:
        """Drop what is queued (not counted as overflow); returns how many items."""
        n = len(self._items)
        self._items.clear()
        return n

    def close(self) -> None:
        """Stop intake; the consumer drains what is queued, then gets ClosedError."""
        self._closed = True
        self._wakeup.set()
