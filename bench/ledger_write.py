"""Ledger write cost per request, in microseconds, against a real Redis.

    python bench/ledger_write.py [--redis-url redis://127.0.0.1:6379/0] [--count 5000]

Three figures, on the same entries (prompt not stored, the proxy's default):
- encode: building the script call alone (Python, no I/O);
- awaited: `await ledger.record(entry)` one at a time, each timed (a loopback round trip and the
  Lua script: the stream entry, the request hash and 8 aggregates);
- pipelined: `ledger.record_nowait(entry)` for all, then `await ledger.flush()`: wall time / count,
  the background writer's batched path.
Keys go under a fresh prefix and are deleted afterwards. The last line is the headline figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import numpy as np
import redis

from router.ledger import LedgerConfig, LedgerEntry, RedisLedger
from router.ledger.entry import AppCap
from router.ledger.keys import LedgerKeys
from router.ledger.scripts import record_call


def entries(count: int, tag: str) -> list[LedgerEntry]:
    """Plausible entries: two tiers, three apps, costs and tokens that vary."""
    now = time.time()
    return [
        LedgerEntry(
            request_id=f"{tag}-{i}", timestamp=now, policy_version="bench", tier=("fast", "deep")[i % 2],
            strategy="direct", rule="easy", difficulty=(i % 100) / 100, models=("small-model",),
            input_tokens=40 + i % 50, output_tokens=100 + i % 80, cost_usd=0.00002 * (1 + i % 7),
            latency_s=0.3, status="ok", app=("chat", "search", None)[i % 3], prompt="What is 2 + 2?",
        )
        for i in range(count)
    ]


async def run(url: str, count: int) -> dict[str, float]:
    """Time the three paths; returns microseconds per request."""
    prefix = f"bench-ledger-{uuid.uuid4().hex[:8]}:"
    config = LedgerConfig(redis_url=url, key_prefix=prefix, timeout_s=5.0, buffer_size=count)
    keys = LedgerKeys(prefix)
    apps = AppCap(config.max_apps)
    results: dict[str, float] = {}
    try:
        warm = entries(500, "warm")
        started = time.perf_counter_ns()
        for entry in warm * 4:
            record_call(entry, keys, config, apps)
        results["encode_us"] = (time.perf_counter_ns() - started) / 1000 / (len(warm) * 4)

        ledger = RedisLedger(config)
        for entry in warm:  # warm-up: connection, script load
            await ledger.record(entry)
        timings = []
        for entry in entries(count, "awaited"):
            started = time.perf_counter_ns()
            await ledger.record(entry)
            timings.append(time.perf_counter_ns() - started)
        micro = np.array(timings) / 1000
        results.update(awaited_mean_us=float(micro.mean()), awaited_p50_us=float(np.percentile(micro, 50)),
                       awaited_p99_us=float(np.percentile(micro, 99)))

        batch = entries(count, "pipelined")
        started = time.perf_counter_ns()
        for entry in batch:
            ledger.record_nowait(entry)
        await ledger.flush(timeout_s=120)
        results["pipelined_us"] = (time.perf_counter_ns() - started) / 1000 / count
        stats = ledger.stats()
        await ledger.aclose()
        assert stats["recorded"] == len(warm) + 2 * count and stats["dropped"] == 0, stats
    finally:
        client = redis.Redis.from_url(url)
        doomed = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for first in range(0, len(doomed), 500):
            client.delete(*doomed[first : first + 500])
        client.close()
    return results


def main() -> None:
    """Run the benchmark and print microseconds per request, the headline last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument("--count", type=int, default=5000, help="records per timed path")
    args = parser.parse_args()
    r = asyncio.run(run(args.redis_url, args.count))
    print(f"encode only (Python):     {r['encode_us']:8.1f} us/request")
    print(f"awaited record():         {r['awaited_mean_us']:8.1f} us/request mean, "
          f"p50 {r['awaited_p50_us']:.1f}, p99 {r['awaited_p99_us']:.1f}")
    print(f"pipelined record_nowait:  {r['pipelined_us']:8.1f} us/request")
    print(f"ledger write: {r['awaited_p50_us']:.0f} us/request awaited (p50, loopback Redis), "
          f"{r['pipelined_us']:.0f} us/request pipelined")


if __name__ == "__main__":
    main()
