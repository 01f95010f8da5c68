"""A per-key daily budget holds under concurrency: reservations are each request's worst case,
settled down to the real cost, so 32 concurrent requests cannot spend past the limit."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from router.backends import FakeBackend, TokenPrice
from tests.server.conftest import REDIS_URL, StartProxy

BUDGET = 0.001
PROMPT = "Please add these two numbers together and give the sum: 1234 and 5678."  # 71 chars: 18 tokens est.


def test_32_concurrent_requests_stay_within_the_daily_budget(start_proxy: StartProxy, redis_prefix: str) -> None:
    # Upstream answers use most of the output limit, so expected-cost reservations would overshoot.
    long_answer = " ".join(["word"] * 60)
    tiers = {
        "fast": FakeBackend([long_answer], model="fake-fast", price=TokenPrice(1.0, 2.0), delay_s=0.05),
        "deep": FakeBackend(["42"], model="fake-deep", price=TokenPrice(10.0, 20.0)),
    }
    proxy = start_proxy(
        tiers=tiers, extra_yaml=f"budgets:\n  per_key_daily_usd: {BUDGET}\n",
        redis_url=REDIS_URL, redis_prefix=redis_prefix,
    )
    body = {"model": "fast", "messages": [{"role": "user", "content": PROMPT}]}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            statuses: list[int] = []
            for _ in range(8):  # 8 rounds of 32 concurrent requests: far more than the budget buys
                responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(32)))
                statuses += [r.status_code for r in responses]
            return statuses

    statuses = asyncio.run(burst())
    assert 200 in statuses and 429 in statuses
    assert set(statuses) <= {200, 429}
    served = [e for e in proxy.entries().values() if e.status == "ok"]
    spent = sum(e.cost_usd for e in served)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    recorded = float(client.get(f"{redis_prefix}spend:anonymous:{day}") or 0)
    client.close()
    assert recorded == pytest.approx(spent)
    # The fake counts words (13 here) and the estimate reads 18 tokens, so the bound is exact:
    assert spent <= BUDGET
