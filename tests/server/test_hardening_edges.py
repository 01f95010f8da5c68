"""Hostile-client edge cases found by fuzzing (issue 10, items 6 and 11), each against the real proxy."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence

import httpx
import pytest
import redis

from core.llm import GenerationParams, Message
from router.backends import FakeBackend
from tests.server.conftest import REDIS_URL, Proxy, StartProxy
from tests.server.support import fake_tiers

HI = [{"role": "user", "content": "hi"}]
HUGE_INT = "9" * 5000  # past Python's 4,300-digit limit on int() of a string


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert response.headers["x-router-request-id"]
    return dict(error)


@pytest.fixture(scope="module")
def proxy(start_module_proxy: StartProxy) -> Proxy:
    return start_module_proxy()


@pytest.mark.parametrize(
    "raw",
    [
        f'{{"model": "fast", "messages": [{{"role": "user", "content": "hi"}}], "max_tokens": {HUGE_INT}}}',
        f'{{"model": "fast", "messages": [], "metadata": {{"n": [{HUGE_INT}]}}}}',
        f"[{HUGE_INT}]",
    ],
    ids=["max-tokens", "nested", "top-level"],
)
def test_a_5000_digit_integer_is_a_400_on_chat(proxy: Proxy, raw: str) -> None:
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        response = http.post("/chat/completions", content=raw, headers={"content-type": "application/json"})
        error = assert_openai_error(response, 400, "invalid_json")
        assert "digits" in str(error["message"])
        assert http.post("/chat/completions", json={"model": "fast", "messages": HI}).status_code == 200


def test_a_5000_digit_integer_is_a_400_on_feedback(proxy: Proxy) -> None:
    raw = f'{{"request_id": "x", "score": {HUGE_INT}}}'
    response = httpx.post(f"{proxy.api}/feedback", content=raw, headers={"content-type": "application/json"})
    assert_openai_error(response, 400, "invalid_json")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_temperature_says_so(proxy: Proxy, value: str) -> None:
    raw = f'{{"model": "fast", "messages": [{{"role": "user", "content": "hi"}}], "temperature": {value}}}'
    response = httpx.post(f"{proxy.api}/chat/completions", content=raw, headers={"content-type": "application/json"})
    error = assert_openai_error(response, 400, "invalid_value")
    assert error["param"] == "temperature"
    assert "NaN and Infinity are not allowed" in str(error["message"])
    assert "not a number" not in str(error["message"])


def test_head_healthz_answers_like_get(proxy: Proxy) -> None:
    head = httpx.head(f"{proxy.url}/healthz")
    get = httpx.get(f"{proxy.url}/healthz")
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["x-router-request-id"]


def test_a_500_carries_the_request_id_it_points_to(start_proxy: StartProxy) -> None:
    def bug(messages: Sequence[Message], params: GenerationParams, index: int) -> str:
        raise ZeroDivisionError("a bug in a backend")

    proxy = start_proxy(tiers=fake_tiers(fast=FakeBackend(bug)))
    response = httpx.post(f"{proxy.api}/chat/completions", json={"model": "fast", "messages": HI}, timeout=10)
    error = assert_openai_error(response, 500, "internal_error")
    assert "request id" in str(error["message"])
    assert len(response.headers.get_list("x-router-request-id")) == 1
    # Errors answered inside the app still carry the header exactly once.
    bad = httpx.post(f"{proxy.api}/chat/completions", json={"model": "fast"}, timeout=10)
    assert bad.status_code == 400 and len(bad.headers.get_list("x-router-request-id")) == 1


def test_a_used_up_budget_never_prints_a_negative_amount(start_proxy: StartProxy, redis_prefix: str) -> None:
    proxy = start_proxy(
        redis_url=REDIS_URL, redis_prefix=redis_prefix,
        extra_yaml="budgets:\n  per_key_daily_usd: 0.001\n  on_exceeded: refuse\n",
    )
    # Concurrent reservations can leave the day's spend past the limit: here by $0.000386.
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    with redis.Redis.from_url(REDIS_URL) as client:
        client.set(f"{redis_prefix}spend:anonymous:{day}", "0.001386")
    response = httpx.post(f"{proxy.api}/chat/completions", json={"model": "fast", "messages": HI}, timeout=10)
    error = assert_openai_error(response, 429, "budget_exceeded")
    message = str(error["message"])
    assert "$-" not in message
    assert "daily budget $0.001, which is used up" in message


def test_feedback_body_is_read_by_the_same_guarded_reader(proxy: Proxy) -> None:
    for raw in (b"", b"{", b"[" * 1500 + b"]" * 1500, json.dumps({"request_id": "x", "score": 1e999}).encode()):
        response = httpx.post(f"{proxy.api}/feedback", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, (raw[:20], response.text)
