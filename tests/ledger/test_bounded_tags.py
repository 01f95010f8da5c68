"""Client input cannot grow Redis without bound: app tags are cut to a short safe form, and past
`max_apps` distinct apps every new one counts as "(other)" (issue: 300 distinct 4 KB apps made 900
permanent keys)."""

from __future__ import annotations

import asyncio
import time
import uuid

from router.ledger import LedgerConfig, LedgerEntry
from router.ledger.entry import OTHER_APP, ledger_tag
from router.ledger.redis_ledger import RedisLedger
from tests.conftest import redis_or_skip
from tests.server.conftest import REDIS_URL


def entry(app: str) -> LedgerEntry:
    return LedgerEntry(
        request_id=uuid.uuid4().hex, timestamp=time.time(), policy_version="v1", tier="fast", strategy="direct",
        rule="default", difficulty=0.1, models=("m",), input_tokens=3, output_tokens=2, cost_usd=1e-6,
        latency_s=0.01, status="ok", app=app,
    )


def test_ledger_tags_are_short_safe_and_distinct() -> None:
    assert ledger_tag("billing-app_2") == "billing-app_2"
    long_a, long_b = "a" * 4096, "a" * 4095 + "b"
    assert len(ledger_tag(long_a) or "") <= 64 and ledger_tag(long_a) != ledger_tag(long_b)
    assert ledger_tag("x y\n{z}") != ledger_tag("x_y__z_")
    assert all(c.isalnum() or c in "_.:@/+-~" for c in ledger_tag("emoji \u2603 & {braces}") or "")


def test_300_distinct_4kb_apps_make_a_bounded_number_of_keys() -> None:
    client = redis_or_skip(REDIS_URL, decode_responses=True)
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    config = LedgerConfig(redis_url=REDIS_URL, key_prefix=prefix, max_apps=20)

    async def write() -> None:
        ledger = RedisLedger(config)
        await ledger.start()
        for i in range(300):
            await ledger.record(entry(f"{i:04d}" + "x" * 4096))
        await ledger.aclose()

    try:
        asyncio.run(write())
        keys = list(client.scan_iter(match=f"{prefix}*"))
        app_keys = [k for k in keys if ":app:" in k]
        assert len(app_keys) <= 2 * (20 + 1)  # all-time and today's aggregate per admitted app, plus "(other)"
        assert max(len(k) for k in keys) < 200
        assert OTHER_APP in client.smembers(f"{prefix}dims:app")
        assert all(client.ttl(k) > 0 for k in keys if k.startswith(f"{prefix}agg:day:") or k.startswith(f"{prefix}req:"))
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()
