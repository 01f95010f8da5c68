"""The worker in this process against real Redis and the replay upstream over HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.llm import Message
from policies import load_policy
from router.execution import DefaultBackends
from router.ledger import LedgerConfig, LedgerEntry, open_sync_ledger
from router.live.jobs import Job
from router.live.loop import LiveLoop
from router.live.queue import JobQueue
from router.live.worker import Worker, explored_id
from tests.conftest import TEST_REDIS_URL


def entry_for(row: dict[str, Any], tier: str, request_id: str) -> LedgerEntry:
    return LedgerEntry(
        request_id=request_id, timestamp=time.time(), policy_version="p1", tier=tier, strategy="direct",
        rule="easy", difficulty=0.3, models=(f"openai/{tier}",), input_tokens=10, output_tokens=5, cost_usd=1e-5,
        latency_s=0.01, status="ok", prompt=row["prompt"],
    )


def answered(upstream: Any, row: dict[str, Any], tier: str) -> str:
    return str(upstream.answer(tier, row["prompt"]))


async def run_worker(policy_path: Path, prefix: str, jobs: int, **kwargs: Any) -> Worker:
    policy = load_policy(policy_path)
    client = Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    config = LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix, store_prompts=True)
    backends = DefaultBackends()
    worker = Worker(client, lambda: policy, backends, config, consumer="t1", min_idle_s=0.2, **kwargs)
    try:
        await asyncio.wait_for(worker.run(asyncio.Event(), max_jobs=jobs, block_ms=200), timeout=60)
    finally:
        await backends.aclose()
        await client.aclose()
    return worker


async def enqueue_all(policy_path: Path, prefix: str, items: list[tuple[LedgerEntry, str]]) -> LiveLoop:
    policy = load_policy(policy_path)
    client = Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    loop = LiveLoop(lambda: policy, client, prefix)
    for entry, answer in items:
        await loop.after_request(entry, [Message(role="user", content=str(entry.prompt))], answer)
    await loop.aclose()
    await client.aclose()
    return loop


def test_judge_verdicts_match_recorded_outcomes(rows: list[dict[str, Any]], upstream: Any, policy_path: Path, prefix: str) -> None:
    app, _ = upstream
    config = LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix, store_prompts=True)
    ledger = open_sync_ledger(config)
    items = []
    for i, row in enumerate(rows[:12]):
        entry = entry_for(row, "weak", f"r{i}")
        ledger.record(entry)
        items.append((entry, answered(app, row, "weak")))
    loop = asyncio.run(enqueue_all(policy_path, prefix, items))
    assert loop.stats()["queued_grade"] == 12
    worker = asyncio.run(run_worker(policy_path, prefix, 12))
    assert worker.totals["graded:weak:judge"] == 12, dict(worker.totals)
    scores = {r.entry.request_id: r.score for r in ledger.records()}
    assert scores == {f"r{i}": float(row["outcomes"]["weak"]["correct"]) for i, row in enumerate(rows[:12])}
    assert ledger.aggregates("tier")["weak"].graded == 12
    # Every job acknowledged and deleted: the queue is empty.
    assert asyncio.run(_depth(prefix)) == 0
    ledger.close()


def test_exploration_answers_other_tier_and_agreement(rows: list[dict[str, Any]], upstream: Any, tmp_path: Path, prefix: str) -> None:
    from bench.live.setup import write_replay_policy

    app, url = upstream
    policy_path = write_replay_policy(tmp_path / "explore.yaml", url, grade=0.0, explore=1.0)
    ledger = open_sync_ledger(LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix, store_prompts=True))
    items = []
    for i, row in enumerate(rows[:8]):
        entry = entry_for(row, "weak", f"x{i}")
        ledger.record(entry)
        items.append((entry, answered(app, row, "weak")))
    asyncio.run(enqueue_all(policy_path, prefix, items))
    worker = asyncio.run(run_worker(policy_path, prefix, 8))
    assert worker.totals["explored"] == 8
    records = {r.entry.request_id: r for r in ledger.records()}
    for i, row in enumerate(rows[:8]):
        strong = records[explored_id(f"x{i}", "strong")]
        assert strong.entry.tier == "strong" and strong.entry.prompt == row["prompt"]
        assert strong.score == float(row["outcomes"]["strong"]["correct"])  # the judge's verdict
    # agreement verdicts: weak agrees with strong exactly when both were right (both wrong answers differ)
    assert worker.totals["graded:weak:agreement"] == 8
    ledger.close()


def test_unknown_request_waits_then_is_dropped(upstream: Any, policy_path: Path, prefix: str, rows: list[dict[str, Any]]) -> None:
    async def scenario() -> Worker:
        client = Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        queue = JobQueue(client, prefix)
        job = Job("grade", "never-recorded", "weak", (Message(role="user", content=rows[0]["prompt"]),), "x", "p1",
                  enqueued_at=time.time())
        assert await queue.enqueue(job.to_json(), 10)
        await client.aclose()
        return await run_worker(policy_path, prefix, 1, record_wait_s=1.0)

    worker = asyncio.run(scenario())
    assert worker.totals["unknown_request"] == 1 and worker.totals["reclaimed"] >= 1
    assert asyncio.run(_depth(prefix)) == 0


def test_full_queue_sheds_and_counts(policy_path: Path, prefix: str, rows: list[dict[str, Any]], tmp_path: Path, upstream: Any) -> None:
    from bench.live.setup import write_replay_policy

    path = write_replay_policy(tmp_path / "small.yaml", upstream[1], grade=1.0, explore=0.0, max_depth=3)
    items = [(entry_for(rows[i], "weak", f"s{i}"), "The answer is (A).") for i in range(5)]
    loop = asyncio.run(enqueue_all(path, prefix, items))
    assert loop.stats()["queued_grade"] == 3 and loop.stats()["shed"] == 2
    assert asyncio.run(_depth(prefix)) == 3


async def _depth(prefix: str) -> int:
    client = Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    try:
        return await JobQueue(client, prefix).depth()
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_verdict_sources_never_override_a_stronger_one(prefix: str, rows: list[dict[str, Any]]) -> None:
    """App feedback outranks the judge, which outranks agreement; each source stays visible in the stream."""
    from router.live.verdicts import VerdictWriter

    config = LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix, store_prompts=True)
    ledger = open_sync_ledger(config)
    for name in ("a", "b"):
        ledger.record(entry_for(rows[0], "weak", name))
    assert ledger.feedback("a", 1.0)  # the app said right

    async def judge() -> list[int]:
        client = Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        writer = VerdictWriter(client, config)
        try:
            return [
                await writer.verdict("a", "weak", 0.0, "judge"),  # kept beside the app's verdict
                await writer.verdict("b", "weak", 0.0, "agreement"),
                await writer.verdict("b", "weak", 1.0, "judge"),  # replaces agreement
                await writer.verdict("b", "weak", 0.0, "judge"),  # already written: refused
            ]
        finally:
            await client.aclose()

    assert asyncio.run(judge()) == [3, 1, 2, -1]
    records = {r.entry.request_id: r for r in ledger.records()}
    assert records["a"].score == 1.0 and records["a"].verdicts == {"feedback": 1.0, "judge": 0.0}
    assert records["b"].score == 1.0 and records["b"].verdicts == {"agreement": 0.0, "judge": 1.0}
    weak = ledger.aggregates("tier")["weak"]
    assert weak.graded == 2 and weak.correct == 2.0
    ledger.close()
