from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import RedisServer, redis_server


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own user state directory, so a daemon started without ``redis.outbox_dir`` never
    shares an outbox (or a state copy) with another test, another checkout's suite or the user's own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def redis_srv() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, stopped after the test."""
    with redis_server() as srv:
        yield srv
