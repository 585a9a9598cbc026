"""Scripted faults: each fires at its simulated time on one venue and, where it lasts, ends by itself.

| kind          | what the client sees                                                                  |
|---------------|---------------------------------------------------------------------------------------|
| drop          | every connection aborted, no close frame (with ``duration_s``: reconnects refused)    |
| disconnect    | every connection closed with a close frame 1001 (with ``duration_s``: refused too)    |
| stall         | no data on any channel, socket open, pings still answered                             |
| stall_channel | no data on ``channel`` only                                                            |
| garbage       | ``count`` frames that are not JSON                                                     |
| absurd_price  | the next ``count`` quote frames at ``value`` x the price (default 1000)                |
| lag           | quotes ``value`` seconds late (exchange timestamps and prices both from then)         |
| manipulate    | quotes at ``1 + value`` x the price (``asset`` or all), mark price too               |
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from hedgewatch.connectors.simulator.scenario import Fault
from hedgewatch.connectors.simulator.transport import VenueServer
from hedgewatch.connectors.simulator.venue import VenueModel

log = logging.getLogger("hedgewatch.simulator")


class FaultRunner:
    """Starts and ends the scenario's faults as simulated time passes."""

    def __init__(
        self, faults: tuple[Fault, ...], models: dict[str, VenueModel], servers: dict[str, VenueServer]
    ) -> None:
        self.pending = sorted(faults, key=lambda f: f.at_s)
        self.active: list[tuple[float, Fault]] = []
        self.fired: list[Fault] = []
        self.models = models
        self.servers = servers
        self.spawn: Callable[[Coroutine[Any, Any, None], str], object] | None = None

    def at(self, elapsed_s: float) -> None:
        """Fire the faults due by ``elapsed_s`` and end the ones whose time is up."""
        for end, fault in list(self.active):
            if end <= elapsed_s:
                self.active.remove((end, fault))
                self._end(fault)
        while self.pending and self.pending[0].at_s <= elapsed_s:
            fault = self.pending.pop(0)
            self.fire(fault, elapsed_s)

    def fire(self, fault: Fault, elapsed_s: float = 0.0) -> None:
        """Start ``fault`` now (tests may call this directly)."""
        srv = self.servers[fault.venue]
        model = self.models[fault.venue]
        log.info("fault %s on %s at %.1fs", fault.kind, fault.venue, elapsed_s)
        self.fired.append(fault)
        kind = fault.kind
        if kind == "drop":
            srv.refusing = fault.duration_s > 0
            srv.drop_all()
        elif kind == "disconnect":
            srv.refusing = fault.duration_s > 0
            if self.spawn is not None:
                self.spawn(srv.disconnect_all(), f"simulator-disconnect-{fault.venue}")
        elif kind == "stall":
            srv.stalled = True
        elif kind == "stall_channel":
            assert fault.channel is not None
            srv.stalled_channels.add(fault.channel)
        elif kind == "garbage":
            srv.send_garbage(fault.count)
        elif kind == "absurd_price":
            factor = fault.value if fault.value is not None else 1000.0
            model.absurd[fault.asset or ""] = (factor, fault.count)
        elif kind == "lag":
            model.extra_lag_s = float(fault.value or 0.0)
        elif kind == "manipulate":
            model.manipulation[fault.asset or ""] = 1.0 + float(fault.value or 0.0)
        if fault.duration_s > 0:
            self.active.append((elapsed_s + fault.duration_s, fault))

    def _end(self, fault: Fault) -> None:
        srv = self.servers[fault.venue]
        model = self.models[fault.venue]
        log.info("fault %s on %s ends", fault.kind, fault.venue)
        if fault.kind in ("drop", "disconnect"):
            srv.refusing = False
        elif fault.kind == "stall":
            srv.stalled = False
        elif fault.kind == "stall_channel":
            srv.stalled_channels.discard(fault.channel or "")
        elif fault.kind == "lag":
            model.extra_lag_s = 0.0
        elif fault.kind == "manipulate":
            model.manipulation.pop(fault.asset or "", None)
