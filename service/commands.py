"""Commands to the daemon over Redis: the stream ``<prefix>:commands``, read with a consumer group so a command
sent while the daemon is down or restarting is applied when it is back, once.

An entry has one field, ``json``: ``{"command": "hedge_ack", "index": "HW3", "contracts": -50 | null,
"advice_id": "HW3-4" | null, "by": "telegram:123"}``. The outcome is written to
``<prefix>:commands:result:<entry id>`` (JSON, kept ``RESULT_TTL_S``), so the sender can tell the user.
A malformed command is answered with an error there and acknowledged: it is never retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from hedgewatch.service.errors import HedgewatchError
from hedgewatch.service.keys import Keys
from hedgewatch.service.outbox import close_client
from hedgewatch.service.redisconn import error_text
from hedgewatch.service.retry import raise_if_cancelled

log = logging.getLogger("hedgewatch.commands")

GROUP = "hedgewatch-daemon"
CONSUMER = "daemon"
RESULT_TTL_S = 300
BLOCK_MS = 1000


class CommandError(HedgewatchError):
    """A command that cannot be applied; its message is the answer to the sender."""


Handler = Callable[[dict[str, Any]], dict[str, Any]]


def parse(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """The command of one stream entry; CommandError when it is not one."""
    raw = fields.get(b"json")
    if raw is None or len(raw) > 4096:
        raise CommandError("a command is one 'json' field of at most 4 KiB")
    try:
        cmd = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CommandError("the 'json' field is not JSON") from None
    if not isinstance(cmd, dict) or not isinstance(cmd.get("command"), str):
        raise CommandError("a command is a JSON object with a 'command' name")
    return cmd


class CommandReader:
    """Reads the command stream and hands each command to ``handle``."""

    def __init__(self, factory: Callable[[], aioredis.Redis], keys: Keys, handle: Handler,
                 *, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self._factory = factory
        self._keys = keys
        self._handle = handle
        self._sleep = sleep
        self._client: aioredis.Redis | None = None
        self._closed = False
        self.applied = 0
        self.refused = 0

    async def close(self) -> None:
        """Stop reading: the client is closed within a bound, which ends a blocking read in flight."""
        self._closed = True
        client, self._client = self._client, None
        await close_client(client)

    async def run(self) -> None:
        backoff, down = 1.0, False
        while not self._closed:
            client = self._client = self._factory()
            try:
                await self._ensure_group(client)
                if down:
                    log.info("command stream %s readable again", self._keys.commands)
                    down, backoff = False, 1.0
                await self._consume(client)
            except (RedisError, OSError) as exc:
                raise_if_cancelled()  # a cancellation redis-py turned into a connection error must still stop us
                if self._closed:
                    return
                if not down:
                    log.warning("command stream %s unreadable (%s); retrying", self._keys.commands,
                                error_text(exc))
                    down = True
                await self._sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if self._client is client:
                    self._client = None
                await close_client(client)

    async def _ensure_group(self, client: aioredis.Redis) -> None:
        try:
            await client.xgroup_create(self._keys.commands, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _consume(self, client: aioredis.Redis) -> None:
        stream = self._keys.commands
        start = "0"  # what this consumer took before a restart and did not acknowledge comes first
        while True:
            got: Any = await client.xreadgroup(GROUP, CONSUMER, {stream: start}, count=100,
                                               block=None if start == "0" else BLOCK_MS)
            raise_if_cancelled()  # redis-py can swallow a cancellation and return the reply
            entries: list[tuple[bytes, dict[bytes, bytes]]] = got[0][1] if got else []
            if start == "0" and not entries:
                start = ">"
                continue
            for entry_id, fields in entries:
                await self._apply(client, entry_id, fields)

    async def _apply(self, client: aioredis.Redis, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        eid = entry_id.decode()
        try:
            result = {"ok": True, **self._handle(parse(fields))}
            self.applied += 1
        except HedgewatchError as exc:
            result = {"ok": False, "error": str(exc)}
            self.refused += 1
            log.warning("command %s refused: %s", eid, exc)
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.command_result(eid), orjson.dumps(result), ex=RESULT_TTL_S)
            pipe.xack(self._keys.commands, GROUP, entry_id)
            await pipe.execute()
