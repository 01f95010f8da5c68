"""API keys, a rate limit and a daily budget enforced across TWO `router serve` processes sharing Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from router.auth import store_api_key
from tests.server.conftest import REDIS_URL
from tests.server.support import ServerThread, write_policy
from tests.conftest import free_port, redis_or_skip
from tests.server.upstream import Upstream

APP_KEY = "sk-test-app-0123456789"
REDIS_KEY = "sk-test-redis-9876543210"
HI = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
POLICY_EXTRA = """
budgets:
  per_key_daily_usd: 0.00015
server:
  api_keys:
    - {name: app, key_env: TEST_APP_KEY, requests_per_minute: 4}
  redis_api_keys: true
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], str]]:
    """Two proxy processes on one policy and one Redis prefix; yields their URLs and the prefix."""
    client = redis_or_skip(REDIS_URL, decode_responses=True)
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    with ServerThread(Upstream()) as upstream:
        policy = write_policy(tmp_path_factory.mktemp("limits") / "router.yaml", upstream=f"{upstream.url}/v1", extra=POLICY_EXTRA)
        env = {
            **os.environ, "TEST_APP_KEY": APP_KEY, "REDIS_URL": REDIS_URL, "ROUTER_REDIS_PREFIX": prefix,
            "ROUTER_PRELOAD": "false",
        }
        ports = [free_port(), free_port()]
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "router", "serve", "--config", str(policy), "--port", str(port), "--log-level", "warning"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            for port in ports
        ]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            for url, process in zip(urls, processes, strict=True):
                wait_healthy(url, process)
            yield urls, prefix
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=10)
                assert process.stderr is not None
                process.stderr.close()
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
            client.close()


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "server exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


def post(url: str, key: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", json=HI, headers=headers, timeout=10)


def test_requests_without_a_valid_key_are_401(servers: tuple[list[str], str]) -> None:
    urls, _ = servers
    for url in urls:
        missing, wrong = post(url, None), post(url, "sk-wrong")
        assert missing.status_code == wrong.status_code == 401
        assert missing.json()["error"]["code"] == "missing_api_key"
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        assert wrong.json()["error"]["type"] == "invalid_request_error"
        assert httpx.get(f"{url}/v1/models", timeout=5).status_code == 401


def test_rate_limit_is_shared_by_both_processes(servers: tuple[list[str], str]) -> None:
    urls, _ = servers
    statuses = [post(urls[i % 2], APP_KEY).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]  # 4 per minute for key 'app', whichever process answers
    refused = post(urls[0], APP_KEY)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "requests"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1


def test_daily_budget_is_shared_by_both_processes(servers: tuple[list[str], str]) -> None:
    urls, prefix = servers
    writer = redis.asyncio.Redis.from_url(REDIS_URL)

    async def add_key() -> None:
        await store_api_key(writer, prefix, REDIS_KEY, name="from-redis", requests_per_minute=100)
        await writer.aclose()

    import asyncio

    asyncio.run(add_key())
    # Each request is reserved at its worst case (1 prompt token + 64 output tokens: $0.000129) and
    # settled at its actual $0.000005, so five fit in the $0.00015 daily budget and the sixth does
    # not (0.000025 + 0.000129 > 0.00015), across both processes.
    statuses = [post(urls[i % 2], REDIS_KEY).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 200, 429]
    refused = post(urls[1], REDIS_KEY)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.json()["error"]["type"] == "insufficient_quota"
    spent = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert float(spent.get(f"{prefix}spend:from-redis:{day}") or 0) == pytest.approx(5 * 5e-6)
    spent.close()
