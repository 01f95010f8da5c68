"""Helpers for the ledger tests (importable by child processes, unlike conftest)."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import redis

from router.ledger import LedgerConfig, LedgerEntry, RedisLedger, StoredRecord
from router.ledger.counts import Counts
from router.ledger.entry import AppCap
from router.ledger.keys import LedgerKeys
from router.ledger.report import record_counts
from router.ledger.scripts import record_call
from tests.conftest import TEST_REDIS_URL


def redis_url() -> str:
    """The tests' Redis: REDIS_URL as it was when the tests started, else the local default."""
    return TEST_REDIS_URL


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every key under the prefix."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for first in range(0, len(keys), 500):
        client.delete(*keys[first : first + 500])


def expected_aggregates(records: list[StoredRecord], config: LedgerConfig) -> dict[str, Counts]:
    """Each aggregate key as the sum of the records that count in it, from the records alone."""
    keys = LedgerKeys(config.key_prefix)
    out: dict[str, Counts] = defaultdict(Counts)
    for record in records:
        for key in record_call(record.entry, keys, config, AppCap(config.max_apps)).keys[5:]:
            out[key].add(record_counts(record))
    return dict(out)


def make_entry(n: int, **overrides: Any) -> LedgerEntry:
    """A plausible entry; `n` varies the id, cost and tokens."""
    values: dict[str, Any] = {
        "request_id": f"req-{n}",
        "timestamp": time.time(),
        "policy_version": "v1",
        "tier": "fast",
        "strategy": "direct",
        "rule": "easy",
        "difficulty": (n % 10) / 10 + 0.05,
        "models": ("small-model",),
        "input_tokens": 10 + n,
        "output_tokens": 20 + n % 7,
        "cost_usd": 0.000123 * (1 + n % 5),
        "latency_s": 0.25 + (n % 3) / 100,
        "status": "ok",
        "app": "demo",
        "prompt": f"What is {n} plus {n}?",
    }
    values.update(overrides)
    return LedgerEntry(**values)


@dataclass
class RedisServer:
    """A redis-server of the test's own, without persistence, that the test can stop and restart."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None



def write_traffic(url: str, prefix: str, worker: int, count: int, shared_ids: list[str]) -> None:
    """One writer process: `count` records with verdicts (some given twice), plus verdicts on shared ids."""
    asyncio.run(_traffic(url, prefix, worker, count, shared_ids))


async def _traffic(url: str, prefix: str, worker: int, count: int, shared_ids: list[str]) -> None:
    ledger = RedisLedger(LedgerConfig(redis_url=url, key_prefix=prefix, timeout_s=5.0))
    rng = random.Random(worker)
    now = time.time()
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        request_id = f"w{worker}-{i}"
        entry = make_entry(
            i,
            request_id=request_id,
            timestamp=now - rng.choice([0, 0, 86_400, 2 * 86_400]),
            tier=rng.choice(["fast", "deep"]),
            policy_version=rng.choice(["v1", "v2"]),
            app=rng.choice(["chat", "search", None]),
            status=rng.choice(["ok", "ok", "ok", "upstream_timeout"]),
            cost_usd=rng.random() / 100,
            latency_s=rng.random(),
        )
        async with gate:
            await ledger.record(entry)
            if i % 3 == 0:
                await ledger.feedback(request_id, rng.random())
            if i % 6 == 0:
                await ledger.feedback(request_id, rng.choice([0.0, 1.0]))

    async def verdict(request_id: str) -> None:
        async with gate:
            await ledger.feedback(request_id, rng.choice([0.0, 0.5, 1.0]))

    shuffled = list(shared_ids)
    rng.shuffle(shuffled)
    await asyncio.gather(*(one(i) for i in range(count)), *(verdict(r) for r in shuffled))
    assert ledger.stats()["buffered"] == 0 and ledger.stats()["write_errors"] == 0, ledger.stats()
    await ledger.aclose()
