"""Redis restarting under a running `router worker` (a private redis-server with AOF), and the
proxy's enqueue while Redis is unreachable."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from bench.live.setup import write_replay_policy
from core.llm import Message
from policies import load_policy
from router.ledger import LedgerConfig, open_sync_ledger
from router.live.loop import LiveLoop
from tests.conftest import wait_for
from tests.live.test_worker import entry_for
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(self.answers, 10, 0.1), "timed out waiting for redis-server"

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: Redis fsyncs its AOF and exits
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_worker_rides_out_a_redis_restart(
    tmp_path: Path, private_redis: PrivateRedis, rows: list[dict[str, Any]], upstream: Any
) -> None:
    app, url = upstream
    app.judge_delay_s = 0.2
    policy_path = write_replay_policy(tmp_path / "router.yaml", url, grade=1.0, explore=0.0)
    config = LedgerConfig(redis_url=private_redis.url, key_prefix="r:", store_prompts=True)
    ledger = open_sync_ledger(config)
    n = 12
    items = []
    for i, row in enumerate(rows[:n]):
        entry = entry_for(row, "weak", f"q{i}")
        ledger.record(entry)
        items.append((entry, str(app.answer("weak", row["prompt"]))))

    async def enqueue() -> None:
        policy = load_policy(policy_path)
        client = AsyncRedis.from_url(private_redis.url, decode_responses=True)
        loop = LiveLoop(lambda: policy, client, "r:")
        for entry, answer in items:
            await loop.after_request(entry, [Message(role="user", content=str(entry.prompt))], answer)
        await loop.aclose()
        await client.aclose()
        assert loop.stats()["queued_grade"] == n

    asyncio.run(enqueue())
    worker = subprocess.Popen(
        [sys.executable, "-m", "router", "worker", "--config", str(policy_path), "--redis-url", private_redis.url,
         "--prefix", "r:", "--concurrency", "2", "--min-idle", "1"],
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _graded(private_redis) >= 2, 60, 0.1), "timed out waiting for the first verdicts"
        private_redis.stop()
        time.sleep(1.5)  # the worker sees the outage (and a judge call may finish meanwhile)
        private_redis.start()  # AOF: the ledger, the queue and the consumer group come back
        drained = wait_for(lambda: _graded(private_redis) == n and _depth(private_redis) == 0, 90, 0.1)
        assert drained, "timed out waiting for every job after the restart"
        assert worker.poll() is None  # it rode out the outage
    finally:
        worker.terminate()
        worker.wait(timeout=10)
    ledger = open_sync_ledger(config)
    records = {r.entry.request_id: r for r in ledger.records()}
    assert all(records[f"q{i}"].verdicts.get("judge") == float(row["outcomes"]["weak"]["correct"])
               for i, row in enumerate(rows[:n]))
    assert ledger.aggregates("tier")["weak"].graded == n  # nothing graded twice across the restart
    ledger.close()


def test_enqueue_with_redis_down_returns_at_once_and_counts(tmp_path: Path, rows: list[dict[str, Any]], upstream: Any) -> None:
    policy = load_policy(write_replay_policy(tmp_path / "router.yaml", upstream[1], grade=1.0, explore=0.0))

    async def scenario() -> dict[str, int]:
        client = AsyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
        loop = LiveLoop(lambda: policy, client, "down:")
        entry = entry_for(rows[0], "weak", "d1")
        await loop.after_request(entry, [Message(role="user", content=rows[0]["prompt"])], "The answer is (A).")
        assert loop.stats()["in_flight"] == 1  # after_request returned before the enqueue ended
        await loop.aclose()
        await client.aclose()
        return loop.stats()

    stats = asyncio.run(scenario())
    assert stats["enqueue_failed"] == 1 and stats["in_flight"] == 0


def _graded(server: PrivateRedis) -> int:
    try:
        return int(redis.Redis(port=server.port, socket_timeout=1).hget("r:agg:tier:weak", "graded") or 0)
    except redis.RedisError:
        return -1


def _depth(server: PrivateRedis) -> int:
    try:
        return int(redis.Redis(port=server.port, socket_timeout=1).xlen("r:live:jobs"))
    except redis.RedisError:
        return -1
