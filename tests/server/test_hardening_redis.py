"""A frozen or dead Redis never stalls requests (issue 10, item 4): a real redis-server of the test's
own, frozen with SIGSTOP while requests run, with `server.redis.on_error` open and closed."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from router.auth import key_digest
from tests.server.conftest import Proxy, StartProxy
from tests.conftest import free_port

APP_KEY = "sk-h5-app-0123456789"
HI = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
# Far above server.redis.timeout_s (0.2 s) times the three calls a request makes, far below the
# time Redis stays frozen: a request that waits for Redis runs into it.
CLIENT_TIMEOUT_S = 5.0


def policy_extra(on_error: str) -> str:
    return f"""
budgets:
  per_key_daily_usd: 1.0
server:
  api_keys:
    - {{name: app, sha256: {key_digest(APP_KEY)}}}
  redis_api_keys: true
  rate_limit: {{requests_per_minute: 100000}}
  redis: {{timeout_s: 0.2, on_error: {on_error}}}
"""


class RedisServer:
    """A redis-server process on a free port, which the test may freeze, thaw or kill."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        with redis.Redis.from_url(self.url) as client:
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def chat(proxy: Proxy, key: str = APP_KEY) -> httpx.Response:
    return httpx.post(
        f"{proxy.api}/chat/completions", json=HI, headers={"authorization": f"Bearer {key}"}, timeout=CLIENT_TIMEOUT_S
    )


def burst(proxy: Proxy, count: int = 8, key: str = APP_KEY) -> list[httpx.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: chat(proxy, key), range(count)))


def metric(proxy: Proxy, line_start: str) -> float:
    text = httpx.get(f"{proxy.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_fail_open_serves_while_redis_is_frozen(
    start_proxy: StartProxy, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = start_proxy(redis_url=redis_server.url, extra_yaml=policy_extra("open"))
    assert chat(proxy).status_code == 200
    redis_server.freeze()
    try:
        with caplog.at_level(logging.WARNING, logger="router.redis_guard"):
            responses = [chat(proxy), *burst(proxy)]
    finally:
        redis_server.thaw()
    assert [r.status_code for r in responses] == [200] * len(responses)
    assert metric(proxy, 'router_redis_failures_total{action="served",operation="rate_limit"}') == len(responses)
    assert metric(proxy, 'router_redis_failures_total{action="served",operation="budget"}') >= 1
    assert "Redis failed during rate_limit (TimeoutError" in caplog.text
    assert "server.redis.on_error: open" in caplog.text
    assert caplog.text.count("Redis failed during rate_limit") == 1  # once per 10 s, not per request
    assert chat(proxy).status_code == 200  # thawed: back to normal


def test_fail_closed_answers_503_while_redis_is_frozen(start_proxy: StartProxy, redis_server: RedisServer) -> None:
    proxy = start_proxy(redis_url=redis_server.url, extra_yaml=policy_extra("closed"))
    assert chat(proxy).status_code == 200
    redis_server.freeze()
    try:
        responses = [chat(proxy), *burst(proxy)]
    finally:
        redis_server.thaw()
    for response in responses:
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "server_error" and error["code"] == "redis_unavailable"
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-router-request-id"]
    assert metric(proxy, 'router_redis_failures_total{action="refused",operation="rate_limit"}') == len(responses)
    assert chat(proxy).status_code == 200


def test_a_key_kept_in_redis_is_refused_not_waited_for(start_proxy: StartProxy, redis_server: RedisServer) -> None:
    """Whatever on_error says, a key that cannot be checked is never accepted; and never hangs."""
    from router.auth import store_api_key

    proxy = start_proxy(redis_url=redis_server.url, extra_yaml=policy_extra("open"))

    async def register() -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(redis_server.url, decode_responses=True)
        await store_api_key(client, proxy.runtime.settings.redis_prefix, "sk-in-redis-42", name="stored")
        await client.aclose()

    import asyncio

    asyncio.run(register())
    assert chat(proxy, "sk-in-redis-42").status_code == 200
    redis_server.freeze()
    try:
        frozen = burst(proxy, 4, "sk-in-redis-42")
    finally:
        redis_server.thaw()
    assert {r.status_code for r in frozen} == {503}
    assert {r.json()["error"]["code"] for r in frozen} == {"redis_unavailable"}
    assert metric(proxy, 'router_redis_failures_total{action="refused",operation="api_key"}') == 4


def test_a_dead_redis_fails_fast_both_ways(start_proxy: StartProxy, redis_server: RedisServer) -> None:
    open_proxy = start_proxy(redis_url=redis_server.url, extra_yaml=policy_extra("open"))
    closed_proxy = start_proxy(redis_url=redis_server.url, extra_yaml=policy_extra("closed"))
    redis_server.stop()
    assert chat(open_proxy).status_code == 200
    refused = chat(closed_proxy)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "redis_unavailable"
