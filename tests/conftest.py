from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import RedisServer, redis_server


@pytest.fixture
def redis_srv() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, stopped after the test."""
    with redis_server() as srv:
        yield srv
