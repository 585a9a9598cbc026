"""Market-cap providers for the constituent selection, the I/O edge of service/constituents.py: an async
``fetch`` returning candidates or raising ``FeedError``; the daemon polls the one ``provider_for`` builds
from the config. ``FileProvider`` re-reads a file (a job may rewrite it between rebalances);
``RestProvider`` fetches the same shapes over HTTP. Parsing is the pure code in constituents.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import httpx

from hedgewatch.service.config import SelectionConfig
from hedgewatch.service.constituents import Candidate, load_candidates_file, parse_candidates
from hedgewatch.service.errors import ConfigError, FeedError


class Provider(Protocol):
    """A source of market-cap data for the selection."""

    async def fetch(self) -> list[Candidate]:
        """The current candidates; raises FeedError when they cannot be had."""
        ...


class FileProvider:
    """The file provider, re-read on every fetch (a job may rewrite the file between rebalances)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    async def fetch(self) -> list[Candidate]:
        try:
            return await asyncio.to_thread(load_candidates_file, self.path)
        except ConfigError as exc:
            raise FeedError(f"market-cap file {self.path}: {exc}") from exc


class RestProvider:
    """Market-cap data over HTTP (a CoinGecko-style ``/coins/markets`` endpoint or one serving our rows)."""

    def __init__(self, url: str, client: httpx.AsyncClient | None = None, timeout_s: float = 10.0) -> None:
        self.url = url
        self._client = client
        self._timeout = timeout_s

    async def fetch(self) -> list[Candidate]:
        """Fetch and parse; raises FeedError on any transport or format failure."""
        try:
            if self._client is not None:
                resp = await self._client.get(self.url, timeout=self._timeout)
            else:
                async with httpx.AsyncClient() as client:
                    resp = await client.get(self.url, timeout=self._timeout)
            resp.raise_for_status()
            return parse_candidates(resp.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise FeedError(f"market-cap provider {self.url}: {exc}") from exc


def rest_provider(selection: SelectionConfig | None) -> RestProvider | None:
    """The REST provider a selection config asks for, if any (the daemon polls its ``fetch``)."""
    if selection is None or selection.provider != "rest" or not selection.url:
        return None
    return RestProvider(selection.url)


def provider_for(selection: SelectionConfig | None) -> Provider | None:
    """The provider a selection config names, if any."""
    if selection is None:
        return None
    if selection.provider == "file":
        return FileProvider(selection.path) if selection.path else None
    return rest_provider(selection)
