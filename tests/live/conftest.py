"""Live-loop fixtures: the replay upstream on a real port, a policy on it, a private Redis prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.live.setup import write_replay_policy
from bench.live.upstream import ReplayUpstream
from tests.conftest import TEST_REDIS_URL
from tests.server.support import ServerThread


def synthetic_rows(n: int = 40) -> list[dict[str, Any]]:
    """Outcome rows in the shared file's format: half choice, half number; weak right on 1/2, strong on 3/4."""
    rows = []
    for i in range(n):
        if i % 2:
            prompt = f"Question {i}: which option holds?\nA. one\nB. two\nC. three\nD. four\nAnswer:"
        else:
            prompt = f"Problem {i}: how many apples are left after {i} are eaten?"
        rows.append({
            "id": f"row{i:04d}", "source": "synthetic", "prompt": prompt,
            "outcomes": {"weak": {"model": "w", "correct": i % 4 < 2}, "strong": {"model": "s", "correct": i % 4 != 3}},
        })
    return rows


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    return synthetic_rows()


@pytest.fixture
def upstream(rows: list[dict[str, Any]]) -> Iterator[tuple[ReplayUpstream, str]]:
    app = ReplayUpstream(rows)
    with ServerThread(app) as server:
        yield app, server.url


@pytest.fixture
def prefix() -> Iterator[str]:
    """A private key prefix, its keys deleted afterwards."""
    name = f"test-live-{uuid.uuid4().hex[:8]}:"
    yield name
    client = redis.Redis.from_url(TEST_REDIS_URL)
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def policy_path(tmp_path: Path, upstream: tuple[ReplayUpstream, str]) -> Path:
    return write_replay_policy(tmp_path / "router.yaml", upstream[1], grade=1.0, explore=0.0)
