"""The Redis ledger on the real Redis: atomic aggregates, verdicts, concurrency, outages, retention."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import time

import pytest
import redis

from core.errors import ConfigError
from router.ledger import (
    Ledger,
    LedgerConfig,
    LedgerReader,
    MemoryLedger,
    RedisLedger,
    SyncRedisLedger,
    open_ledger,
)
from router.ledger.counts import Counts
from router.ledger.keys import utc_day
from tests.ledger.support import RedisServer, expected_aggregates, make_entry, redis_url, write_traffic


def stored_aggregates(client: redis.Redis, prefix: str) -> dict[str, Counts]:
    return {key: Counts.from_hash(client.hgetall(key)) for key in client.scan_iter(match=f"{prefix}agg:*")}


def test_record_writes_stream_request_hash_and_eight_aggregates(config: LedgerConfig, shared_redis: redis.Redis) -> None:
    entries = [make_entry(1), make_entry(2, tier="deep", app=None), make_entry(3, status="upstream_timeout")]

    async def scenario() -> dict[str, int]:
        ledger = RedisLedger(config)
        for entry in entries:
            await ledger.record(entry)
        stats = ledger.stats()
        await ledger.aclose()
        return stats

    stats = asyncio.run(scenario())
    assert stats["recorded"] == 3 and stats["buffered"] == 0 and stats["redis_up"] == 1
    p = config.key_prefix
    assert shared_redis.xlen(f"{p}stream") == 3
    day = utc_day(entries[0].timestamp)
    assert shared_redis.hgetall(f"{p}req:req-2") == {"t": "deep", "p": "v1", "a": "(none)", "d": day, "c": "369000"}
    totals = Counts.from_hash(shared_redis.hgetall(f"{p}agg:all"))
    assert totals.requests == 3 and totals.errors == 1 and totals.graded == 0
    assert totals.cost_nusd == sum(round(e.cost_usd * 1e9) for e in entries)
    assert totals.input_tokens == sum(e.input_tokens for e in entries)
    assert Counts.from_hash(shared_redis.hgetall(f"{p}agg:tier:deep")).requests == 1
    assert Counts.from_hash(shared_redis.hgetall(f"{p}agg:app:(none)")).requests == 1
    assert Counts.from_hash(shared_redis.hgetall(f"{p}agg:day:{day}:tier:fast")).requests == 2
    assert shared_redis.smembers(f"{p}dims:tier") == {"fast", "deep"}
    records = SyncRedisLedger(config).records()
    assert [r.entry for r in records] == entries
    assert stored_aggregates(shared_redis, p) == expected_aggregates(records, config)


def test_second_verdict_replaces_the_first_in_every_aggregate(config: LedgerConfig, shared_redis: redis.Redis) -> None:
    entry = make_entry(1, cost_usd=0.002)

    async def scenario() -> list[bool]:
        ledger = RedisLedger(config)
        await ledger.record(entry)
        await ledger.record(make_entry(2))  # ungraded neighbour in the same aggregates
        results = [await ledger.feedback("req-1", True), await ledger.feedback("req-1", 0.0)]
        results.append(await ledger.feedback("req-1", 0.25))
        results.append(await ledger.feedback("no-such-request", 1.0))
        with pytest.raises(ConfigError, match=r"\[0, 1\]"):
            await ledger.feedback("req-1", 1.5)
        assert ledger.stats()["feedback"] == 3 and ledger.stats()["feedback_unknown"] == 1
        await ledger.aclose()
        return results

    assert asyncio.run(scenario()) == [True, True, True, False]
    aggregates = stored_aggregates(shared_redis, config.key_prefix)
    assert len(aggregates) == 8
    for counts in aggregates.values():
        assert (counts.graded, counts.graded_cost_nusd, counts.correct_e6) == (1, 2_000_000, 250_000)
        assert counts.cost_per_correct == pytest.approx(0.008)
    reader = SyncRedisLedger(config)
    assert reader.feedback("req-1", 1.0) is True
    assert {r.entry.request_id: r.score for r in reader.records()} == {"req-1": 1.0, "req-2": None}
    assert stored_aggregates(shared_redis, config.key_prefix) == expected_aggregates(reader.records(), config)


def test_a_request_id_is_recorded_once(config: LedgerConfig, shared_redis: redis.Redis) -> None:
    reader = SyncRedisLedger(config)
    assert reader.record(make_entry(1)) is True
    assert reader.record(make_entry(1)) is False
    assert shared_redis.xlen(f"{config.key_prefix}stream") == 1
    assert Counts.from_hash(shared_redis.hgetall(f"{config.key_prefix}agg:all")).requests == 1


def test_two_processes_writing_concurrently_keep_aggregates_equal_to_the_records(
    config: LedgerConfig, shared_redis: redis.Redis
) -> None:
    shared = [f"shared-{i}" for i in range(40)]
    setup = SyncRedisLedger(config)
    for i, request_id in enumerate(shared):
        setup.record(make_entry(i, request_id=request_id, tier="deep"))
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=write_traffic, args=(redis_url(), config.key_prefix, worker, 300, shared))
        for worker in (1, 2)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
    assert [p.exitcode for p in workers] == [0, 0]
    records = setup.records()
    assert len(records) == 640
    assert all(r.graded for r in records if r.entry.request_id in shared)
    stored = stored_aggregates(shared_redis, config.key_prefix)
    assert stored == expected_aggregates(records, config)
    assert sum(c.graded for k, c in stored.items() if k.endswith("agg:all")) == 40 + 2 * 100


def test_redis_outage_buffers_writes_and_flushes_them_on_restart(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = LedgerConfig(redis_url=own_redis.url, key_prefix="outage:", timeout_s=0.3)

    async def scenario() -> None:
        ledger = RedisLedger(config)
        await ledger.start()
        for i in range(5):
            await ledger.record(make_entry(i))
        own_redis.stop()
        started = time.perf_counter()
        for i in range(5, 25):
            await ledger.record(make_entry(i))  # never raises
        assert await ledger.feedback("req-7", 1.0) is True  # queued behind its record
        assert time.perf_counter() - started < 2.0
        stats = ledger.stats()
        assert (stats["buffered"], stats["redis_up"], stats["outages"], stats["dropped"]) == (21, 0, 1, 0)
        own_redis.start()  # a fresh, empty server on the same port
        assert await ledger.flush(timeout_s=15) is True
        stats = ledger.stats()
        assert (stats["recorded"], stats["flushed"], stats["feedback"], stats["buffered"], stats["redis_up"]) == (
            25, 21, 1, 0, 1)
        await ledger.record(make_entry(99))  # straight to Redis again
        await ledger.aclose()

    with caplog.at_level(logging.WARNING, logger="router.ledger"):
        asyncio.run(scenario())
    assert "is unreachable" in caplog.text and "reachable again" in caplog.text
    reader = SyncRedisLedger(config)
    records = reader.records()
    assert len(records) == 21  # the 20 buffered + 1 after; the first 5 died with the old server
    assert [r.entry.request_id for r in records if r.graded] == ["req-7"]
    totals = reader.aggregates(None)[""]
    assert (totals.requests, totals.graded, totals.correct) == (21, 1, 1.0)
    reader.close()


def test_a_full_buffer_drops_counts_and_logs(own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    config = LedgerConfig(redis_url=own_redis.url, key_prefix="full:", timeout_s=0.3, buffer_size=3)

    async def scenario() -> dict[str, int]:
        ledger = RedisLedger(config)
        await ledger.record(make_entry(0))
        own_redis.stop()
        for i in range(1, 6):
            await ledger.record(make_entry(i))
        assert ledger.stats()["dropped"] == 2 and ledger.stats()["buffered"] == 3
        await ledger.aclose(timeout_s=0.2)
        return ledger.stats()

    with caplog.at_level(logging.WARNING, logger="router.ledger"):
        stats = asyncio.run(scenario())
    assert stats["lost_at_close"] == 3 and stats["buffered"] == 0
    assert "buffer is full" in caplog.text and "lost at shutdown" in caplog.text


def test_retention_caps_the_stream_and_sets_ttls(prefix: str, shared_redis: redis.Redis) -> None:
    config = LedgerConfig(redis_url=redis_url(), key_prefix=prefix, stream_maxlen=100, record_ttl_days=1,
                          aggregate_ttl_days=2)
    reader = SyncRedisLedger(config)
    now = time.time()
    for i in range(700):
        reader.record(make_entry(i, timestamp=now))
    assert 100 <= shared_redis.xlen(f"{prefix}stream") <= 250  # MAXLEN ~ trims whole stream nodes
    assert reader.trimmed_until() is not None
    assert 86_400 - 60 < shared_redis.ttl(f"{prefix}req:req-5") <= 86_400
    day_end = (int(now // 86_400) + 1) * 86_400
    assert abs(shared_redis.ttl(f"{prefix}agg:day:{utc_day(now)}:tier:fast") - (day_end + 2 * 86_400 - now)) < 60
    assert shared_redis.ttl(f"{prefix}agg:tier:fast") == -1  # all-time aggregates have no TTL
    assert shared_redis.ttl(f"{prefix}agg:all") == -1

    old = make_entry(1000, timestamp=now - 10 * 86_400)  # its day's aggregates are already past their TTL
    assert reader.record(old) is True
    assert not shared_redis.exists(f"{prefix}agg:day:{utc_day(old.timestamp)}")
    assert reader.feedback("req-1000", 1.0) is True
    assert not shared_redis.exists(f"{prefix}agg:day:{utc_day(old.timestamp)}")  # not resurrected without TTL
    assert reader.aggregates(None)[""].graded == 1
    reader.close()


def test_verdicts_outlive_the_request_hash(config: LedgerConfig, shared_redis: redis.Redis) -> None:
    reader = SyncRedisLedger(config)
    reader.record(make_entry(1))
    reader.feedback("req-1", 0.0)
    reader.feedback("req-1", 1.0)
    shared_redis.delete(f"{config.key_prefix}req:req-1")  # what record_ttl_days does
    assert [(r.entry.request_id, r.score) for r in reader.records()] == [("req-1", 1.0)]
    assert reader.feedback("req-1", 0.0) is False  # too late to grade
    reader.close()


def test_record_nowait_goes_through_the_pipelined_writer(config: LedgerConfig) -> None:
    async def scenario() -> dict[str, int]:
        ledger = RedisLedger(config)
        for i in range(600):
            ledger.record_nowait(make_entry(i))
        assert await ledger.flush(timeout_s=10)
        stats = ledger.stats()
        await ledger.aclose()
        return stats

    stats = asyncio.run(scenario())
    assert (stats["recorded"], stats["queued_total"], stats["flushed"], stats["buffered"]) == (600, 600, 600, 0)
    assert SyncRedisLedger(config).aggregates("tier")["fast"].requests == 600


def test_embedded_store_has_the_same_numbers_as_redis(config: LedgerConfig) -> None:
    now = time.time()
    entries = [
        make_entry(i, timestamp=now - (i % 3) * 86_400, tier=["fast", "deep"][i % 2], app=[None, "chat"][i % 3 == 0],
                   policy_version=f"v{i % 2}")
        for i in range(30)
    ]
    verdicts = [(f"req-{i}", (i % 4) / 3 if i % 4 else 1.0) for i in range(0, 30, 2)] + [("req-4", 0.0), ("nope", 1.0)]
    memory = MemoryLedger(config)
    redis_ledger = SyncRedisLedger(config)
    for entry in entries:
        assert memory.record_sync(entry) == redis_ledger.record(entry)
    for request_id, score in verdicts:
        assert memory.feedback_sync(request_id, score) == redis_ledger.feedback(request_id, score)
    days = sorted({utc_day(e.timestamp) for e in entries})
    for dimension in (None, "tier", "policy", "app"):
        assert memory.aggregates(dimension) == redis_ledger.aggregates(dimension)
        assert memory.aggregates(dimension, days) == redis_ledger.aggregates(dimension, days)
    assert memory.records() == redis_ledger.records()
    assert memory.records(since=now - 3600) == redis_ledger.records(since=now - 3600)


def test_embedded_store_ranks_verdict_sources_as_redis_does(config: LedgerConfig) -> None:
    """feedback > reference > judge > agreement in both stores: a weaker source never moves the
    aggregates of a request a stronger one graded, and every source's latest verdict is read back."""
    entries = [make_entry(i, tier=["fast", "deep"][i % 2]) for i in range(6)]
    verdicts = [
        ("req-0", 1.0, "judge"), ("req-0", 0.0, "feedback"), ("req-0", 1.0, "judge"),  # the app's stays
        ("req-1", 0.0, "agreement"), ("req-1", 1.0, "reference"),  # a stronger one replaces
        ("req-2", 1.0, "reference"), ("req-2", 0.0, "reference"),  # same source: replaced
        ("req-3", 0.5, "judge"), ("nope", 1.0, "judge"),
    ]
    memory = MemoryLedger(config)
    redis_ledger = SyncRedisLedger(config)
    for entry in entries:
        assert memory.record_sync(entry) == redis_ledger.record(entry)
    for request_id, score, source in verdicts:
        assert memory.feedback_sync(request_id, score, source=source) == redis_ledger.feedback(request_id, score, source)
    for dimension in (None, "tier"):
        assert memory.aggregates(dimension) == redis_ledger.aggregates(dimension)
    assert memory.records() == redis_ledger.records()
    by_id = {r.entry.request_id: r for r in memory.records()}
    assert (by_id["req-0"].score, by_id["req-0"].verdicts) == (0.0, {"feedback": 0.0, "judge": 1.0})
    assert (by_id["req-1"].score, by_id["req-1"].verdicts) == (1.0, {"reference": 1.0, "agreement": 0.0})
    assert (by_id["req-2"].score, by_id["req-2"].verdicts) == (0.0, {"reference": 0.0})
    total = memory.aggregates(None)[""]
    assert (total.graded, total.correct) == (4, 1.5)


def test_embedded_store_keeps_its_requests_out_of_the_garbage_collector(config: LedgerConfig) -> None:
    """Up to stream_maxlen requests live as long as the proxy: not one of them is left for a collection to walk."""
    memory = MemoryLedger(config)
    for i in range(200):
        memory.record_sync(make_entry(i))
    for i in range(0, 200, 2):
        memory.feedback_sync(f"req-{i}", 1.0, source="judge")
        memory.feedback_sync(f"req-{i}", 0.0, source="feedback")
    gc.collect()
    kept = list(memory._requests.values())
    assert len(kept) == 200 and not any(gc.is_tracked(request) for request in kept)
    assert {r.entry.request_id: r.verdicts for r in memory.records()}["req-0"] == {"judge": 1.0, "feedback": 0.0}


def test_a_malformed_entry_is_counted_never_raised(config: LedgerConfig, caplog: pytest.LogCaptureFixture) -> None:
    bad = make_entry(1, timestamp=float("nan"))

    async def scenario(ledger: Ledger) -> dict[str, int]:
        await ledger.record(bad)
        ledger.record_nowait(bad)
        await ledger.record(make_entry(2))
        stats = ledger.stats()
        await ledger.aclose()
        return stats

    with caplog.at_level(logging.ERROR, logger="router.ledger"):
        for ledger in (RedisLedger(config), MemoryLedger(config)):
            stats = asyncio.run(scenario(ledger))
            assert (stats["invalid"], stats["recorded"]) == (2, 1)
    assert "'req-1' was not recorded" in caplog.text


def test_open_ledger_picks_the_store_and_says_when_nothing_persists(caplog: pytest.LogCaptureFixture) -> None:
    embedded = open_ledger(None)
    assert isinstance(embedded, MemoryLedger) and isinstance(embedded, Ledger) and isinstance(embedded, LedgerReader)
    with caplog.at_level(logging.WARNING, logger="router.ledger"):
        asyncio.run(embedded.start())
    assert "nothing will persist" in caplog.text
    assert isinstance(open_ledger(LedgerConfig(redis_url=redis_url())), RedisLedger)
    with pytest.raises(ConfigError, match="--redis-url"):
        SyncRedisLedger(LedgerConfig())


def test_embedded_store_evicts_past_its_cap() -> None:
    ledger = MemoryLedger(LedgerConfig(stream_maxlen=100))
    for i in range(150):
        ledger.record_sync(make_entry(i))
    assert len(ledger.records()) == 100 and ledger.trimmed_until() is not None
    assert ledger.feedback_sync("req-0", 1.0) is False  # evicted
    assert ledger.feedback_sync("req-149", 1.0) is True
    assert ledger.aggregates(None)[""].requests == 150  # aggregates keep counting
