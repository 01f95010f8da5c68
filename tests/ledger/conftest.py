"""Ledger fixtures: the real Redis under a unique key prefix (deleted after), a private redis-server."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest
import redis

from router.ledger import LedgerConfig
from tests.ledger.support import RedisServer, delete_prefix, redis_url
from tests.conftest import free_port, redis_or_skip


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[redis.Redis]:
    """A client of the real Redis the tests share (skips when none answers)."""
    client = redis_or_skip(redis_url(), decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix(shared_redis: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    name = f"test-ledger-{uuid.uuid4().hex[:10]}:"
    yield name
    delete_prefix(shared_redis, name)


@pytest.fixture
def config(prefix: str) -> LedgerConfig:
    return LedgerConfig(redis_url=redis_url(), key_prefix=prefix, store_prompts=True)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server on a free port (killed at teardown)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()
