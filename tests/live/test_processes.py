"""The loop end to end with real processes: `router serve`, `router worker` (killed mid-job), real Redis."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis

from bench.live.setup import write_replay_policy
from router.ledger import LedgerConfig, open_sync_ledger
from router.live.queue import GROUP, LiveKeys
from router.live.training import export_for_training
from router.live.worker import explored_id
from tests.conftest import TEST_REDIS_URL, free_port, wait_for

ROUTER = [sys.executable, "-m", "router"]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start(*args: str, name: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "NO_PROXY": "127.0.0.1,localhost"}
        log = (tmp_path / f"{name}.log").open("wb")
        logs.append(log)
        process = subprocess.Popen([*ROUTER, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    for log in logs:
        log.close()


def worker_args(policy: Path, prefix: str, *extra: str) -> list[str]:
    return ["worker", "--config", str(policy), "--prefix", prefix, "--min-idle", "1", "--concurrency", "4", *extra]


def test_proxy_worker_loop_and_a_worker_killed_mid_job(
    tmp_path: Path, rows: list[dict[str, Any]], upstream: Any, prefix: str, spawn: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, url = upstream
    app.judge_delay_s = 0.3
    policy = write_replay_policy(tmp_path / "router.yaml", url, grade=1.0, explore=1.0)
    port = free_port()
    monkeypatch.setenv("ROUTER_REDIS_PREFIX", prefix)
    monkeypatch.setenv("ROUTER_PRELOAD", "false")
    spawn("serve", "--config", str(policy), "--port", str(port), name="serve")
    proxy = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _ready(proxy), 60, 0.1), "timed out waiting for the proxy"

    n = 16
    with httpx.Client(base_url=proxy, timeout=30) as client:
        ids = []
        for row in rows[:n]:
            reply = client.post("/v1/chat/completions", json={
                "model": "weak", "messages": [{"role": "user", "content": row["prompt"]}]})
            assert reply.status_code == 200, reply.text
            ids.append(reply.headers["x-router-request-id"])
    r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    keys = LiveKeys(prefix)
    queued_all = wait_for(lambda: int(r.hget(keys.stats, "enqueued") or 0) == n, 10, 0.1)
    assert queued_all, "timed out waiting for the proxy to queue every job"

    # A worker takes jobs, and is killed while the (slow) judge is answering.
    first = spawn(*worker_args(policy, prefix), name="worker-1")
    assert wait_for(lambda: _pending(r, keys) > 0, 30, 0.1), "timed out waiting for the first worker to take jobs"
    time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    stranded = _pending(r, keys)
    spawn(*worker_args(policy, prefix), name="worker-2")
    ledger = open_sync_ledger(LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix))

    def all_graded() -> bool:
        records = {rec.entry.request_id: rec for rec in ledger.records()}
        return all("judge" in records[i].verdicts and explored_id(i, "strong") in records
                   and "judge" in records[explored_id(i, "strong")].verdicts for i in ids if i in records)

    assert wait_for(all_graded, 90, 0.1), "timed out waiting for every answer to be judged"
    assert wait_for(lambda: r.xlen(keys.jobs) == 0, 30, 0.1), "timed out waiting for the queue to drain"
    records = {rec.entry.request_id: rec for rec in ledger.records()}
    for request_id, row in zip(ids, rows[:n], strict=True):
        assert records[request_id].verdicts["judge"] == float(row["outcomes"]["weak"]["correct"])
        strong = records[explored_id(request_id, "strong")]
        assert strong.verdicts["judge"] == float(row["outcomes"]["strong"]["correct"])
    # Nothing graded twice: one judge verdict per answer in the stream, and the aggregates agree.
    stream = cast(list[tuple[str, dict[str, str]]], r.xrange(f"{prefix}stream"))
    judged = collections.Counter(fields["v"] for _, fields in stream if fields.get("src") == "judge")
    assert set(judged.values()) == {1} and len(judged) == 2 * n
    tiers = ledger.aggregates("tier")
    assert tiers["weak"].graded == n and tiers["strong"].graded == n
    assert stranded > 0  # the kill really left jobs behind for the second worker

    # The ledger now trains: every prompt graded at both tiers, verdicts from the judge.
    data = export_for_training(TEST_REDIS_URL, tmp_path / "ledger.jsonl", prefix=prefix, sources=["judge"],
                               tiers=["weak", "strong"])
    assert data.rows == n and data.sources["judge"] == 2 * n
    ledger.close()
    r.close()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _pending(r: redis.Redis, keys: LiveKeys) -> int:
    try:
        return int(r.xpending(keys.jobs, GROUP)["pending"])
    except redis.ResponseError:
        return 0


def test_shadow_a_candidate_on_a_running_proxy(
    tmp_path: Path, rows: list[dict[str, Any]], upstream: Any, prefix: str, spawn: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`router policy shadow --candidate` on a proxy and a worker already running: picked up without a
    restart, both answers judged, `--report --json` agrees with the recorded outcomes; /metrics shows it."""
    app, url = upstream
    # Live sends nearly everything to weak, the candidate nearly everything to strong.
    live = write_replay_policy(tmp_path / "router.yaml", url, grade=0.0, explore=0.0, threshold=0.9999)
    candidate = write_replay_policy(tmp_path / "candidate.yaml", url, grade=0.0, explore=0.0, threshold=0.0001)
    port = free_port()
    monkeypatch.setenv("ROUTER_REDIS_PREFIX", prefix)
    monkeypatch.setenv("ROUTER_PRELOAD", "false")
    spawn("serve", "--config", str(live), "--port", str(port), name="serve")
    proxy = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _ready(proxy), 60, 0.1), "timed out waiting for the proxy"
    spawn(*worker_args(live, prefix), name="worker")
    env = {**os.environ, "REDIS_URL": TEST_REDIS_URL}
    started = subprocess.run(
        [*ROUTER, "policy", "shadow", "--candidate", str(candidate), "--sample", "1", "--config", str(live),
         "--prefix", prefix], env=env, capture_output=True, text=True, timeout=60,
    )
    assert started.returncode == 0, started.stderr

    sent: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=proxy, timeout=60) as client:

        def ask(row: dict[str, Any]) -> None:
            reply = client.post("/v1/chat/completions", json={
                "model": "router", "messages": [{"role": "user", "content": row["prompt"]}]})
            assert reply.status_code == 200, reply.text
            sent[reply.headers["x-router-request-id"]] = row

        warm = iter(rows[20:])  # until the proxy has looked the candidate up (every 5 s, in the background)

        def shadowing() -> bool:
            ask(next(warm))
            return _metric(client.get("/metrics").text, 'router_live_enqueue_total{outcome="queued_shadow"}') > 0

        assert wait_for(shadowing, 30, 0.1), "timed out waiting for the proxy to shadow the candidate"
        for row in rows[:12]:
            ask(row)
        r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        version = str(r.hget(f"{prefix}live:shadow", "version"))

        def queued() -> float:  # enqueues finish in the background, after the response
            return _metric(client.get("/metrics").text, 'router_live_enqueue_total{outcome="queued_shadow"}')

        assert wait_for(lambda: queued() >= 13, 10, 0.1), "timed out waiting for every shadow job to be queued"
        rows_done = wait_for(lambda: r.hlen(f"{prefix}live:shadow:rows:{version}") == queued(), 90, 0.1)
        assert rows_done, "timed out waiting for every shadow row"
        assert wait_for(lambda: r.xlen(LiveKeys(prefix).jobs) == 0, 30, 0.1), "timed out waiting for the queue to drain"
        assert _metric(client.get("/metrics").text, "router_live_queue_depth") == 0
        total = queued()

    reported = subprocess.run(
        [*ROUTER, "policy", "shadow", "--report", "--json", "--prefix", prefix, "--config", str(live)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert reported.returncode == 0, reported.stderr
    report = json.loads(reported.stdout)
    stored = cast(dict[str, str], r.hgetall(f"{prefix}live:shadow:rows:{version}"))
    rows_by_id = {i: json.loads(text) for i, text in stored.items()}
    ledger = open_sync_ledger(LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix))
    records = {rec.entry.request_id: rec for rec in ledger.records()}
    for request_id, row in rows_by_id.items():
        outcomes = sent[request_id]["outcomes"]
        assert row["live_tier"] == records[request_id].entry.tier
        assert row["live_correct"] == float(outcomes[row["live_tier"]]["correct"])
        assert row["candidate_correct"] == float(outcomes[row["candidate_tier"]]["correct"])
        assert records[request_id].verdicts == {"judge": row["live_correct"]}
    assert report["version"] == version and report["graded"] == len(rows_by_id) == total
    assert report["different_plan"] == sum(not row["same_plan"] for row in rows_by_id.values()) > 0
    live_right = sum(row["live_correct"] for row in rows_by_id.values())
    assert report["live"]["accuracy"]["value"] == pytest.approx(live_right / total, abs=1e-6)
    ledger.close()
    r.close()


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
