"""Client disconnects cancel upstream work; failing upstreams fall back, then become 502/504."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from router.backends import FakeBackend, TokenPrice
from core.errors import BackendUnavailable
from tests.conftest import wait_for
from tests.server.conftest import StartProxy
from tests.server.support import SlowBackend, fake_tiers
from tests.server.upstream import Upstream

HI = [{"role": "user", "content": "hi"}]


def test_disconnect_mid_stream_closes_the_upstream_stream(start_proxy: StartProxy, upstream: tuple[Upstream, str]) -> None:
    app, url = upstream
    extra = f"""
    server:
      passthrough: {{models: ["drip-*"], api_base: "{url}"}}
    """
    proxy = start_proxy(real_backends=True, upstream_url=url, extra_yaml=extra)
    with httpx.Client(timeout=10) as http, http.stream(
        "POST", f"{proxy.api}/chat/completions", json={"model": "drip-model", "messages": HI, "stream": True}
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]  # role chunk and two words, with blank separators
        assert any("w1" in line for line in received)
    # The client is gone: the proxy must drop its upstream stream long before its 100 chunks end.
    assert app.disconnected.wait(timeout=3)
    assert app.drip_chunks_sent < 60
    assert wait_for(lambda: any(e.status == "client_disconnected" for e in proxy.entries().values()))


def test_disconnect_while_waiting_cancels_the_backend_call(start_proxy: StartProxy) -> None:
    slow = SlowBackend(delay_s=10)
    proxy = start_proxy(tiers=fake_tiers(fast=slow))
    for stream in (False, True):
        slow.started.clear()
        slow.cancelled.clear()
        with httpx.Client(timeout=0.5) as http, pytest.raises(httpx.ReadTimeout):
            http.post(f"{proxy.api}/chat/completions", json={"model": "fast", "messages": HI, "stream": stream})
        assert slow.started.is_set()
        assert slow.cancelled.wait(timeout=3), f"backend work not cancelled (stream={stream})"
    assert wait_for(lambda: sum(e.status == "client_disconnected" for e in proxy.entries().values()) == 2)


def test_failing_tier_falls_back_to_the_policy_fallback(start_proxy: StartProxy) -> None:
    failing = FakeBackend(["never"], failures=[BackendUnavailable("deep is down; try later.")] * 5)
    proxy = start_proxy(tiers=fake_tiers(deep=failing))
    with openai.OpenAI(base_url=proxy.api, api_key="x", max_retries=0) as api:
        raw = api.chat.completions.with_raw_response.create(model="deep", messages=HI)
    assert raw.headers["x-router-tier"] == "fast"
    assert raw.parse().choices[0].message.content == "fast answer is 7"
    entry = next(iter(proxy.entries().values()))
    assert entry.extra["failed_tiers"] == ["deep"] and entry.extra["decided_tier"] == "deep"
    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert 'router_routing_events_total{kind="fallback",source="deep",target="fast"} 1.0' in metrics


def test_passthrough_to_a_failing_upstream_is_a_502_then_fallback(
    start_proxy: StartProxy, upstream: tuple[Upstream, str]
) -> None:
    app, url = upstream
    no_fallback = start_proxy(
        real_backends=True, upstream_url=url,
        extra_yaml=f'\nserver:\n  passthrough: {{models: ["fail-*"], api_base: "{url}"}}\n',
    )
    with openai.OpenAI(base_url=no_fallback.api, api_key="x", max_retries=0) as api:
        with pytest.raises(openai.APIStatusError) as caught:
            api.chat.completions.create(model="fail-model", messages=HI)
        assert caught.value.status_code == 502
        body = caught.value.body
        assert isinstance(body, dict) and body["code"] == "upstream_error" and "HTTP 500" in body["message"]
        assert len(app.requests) == 3  # the backend retried a 5xx before giving up
        # The server keeps serving: the same upstream's good model works.
        assert api.chat.completions.create(model="fast", messages=HI).choices[0].message.content == "reply: hi"

    with_fallback = start_proxy(
        real_backends=True, upstream_url=url,
        extra_yaml=f'\nserver:\n  passthrough: {{models: ["fail-*"], api_base: "{url}", fallbacks: [fast]}}\n',
    )
    with openai.OpenAI(base_url=with_fallback.api, api_key="x", max_retries=0) as api:
        raw = api.chat.completions.with_raw_response.create(model="fail-model", messages=HI)
        assert raw.headers["x-router-tier"] == "fast"
        assert raw.parse().choices[0].message.content == "reply: hi"
        stream = api.chat.completions.create(model="fail-model", messages=HI, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip() == "reply: hi"


def test_upstream_timeout_is_a_504(start_proxy: StartProxy, upstream: tuple[Upstream, str]) -> None:
    _, url = upstream
    proxy = start_proxy(
        real_backends=True, upstream_url=url,
        extra_yaml=f'\nserver:\n  passthrough: {{models: ["slow-*"], api_base: "{url}", timeout_s: 0.3}}\n',
    )
    response = httpx.post(f"{proxy.api}/chat/completions", json={"model": "slow-model", "messages": HI}, timeout=10)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


class _AnswersOnceThenHangs:
    """One round of a vote at once, then the next round never comes: a client that gives up leaves it mid-vote."""

    def __init__(self) -> None:
        self.inner = FakeBackend(["Answer: 41", "Answer: 42", "Answer: 43"], model="fake-deep", price=TokenPrice(10.0, 20.0))
        self.calls = 0

    async def generate(self, messages, params):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls > 1:
            await asyncio.sleep(30)
        return await self.inner.generate(messages, params)


def test_a_disconnect_mid_vote_still_accounts_the_rounds_already_paid(start_proxy: StartProxy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.server.support import write_policy

    path = write_policy(tmp_path / "router.yaml")
    path.write_text(path.read_text().replace("n: 3, answer_type", "n: 6, round_size: 3, answer_type", 1))
    proxy = start_proxy(policy=path, tiers=fake_tiers(deep=_AnswersOnceThenHangs()))
    with httpx.Client(timeout=1.0) as http, pytest.raises(httpx.ReadTimeout):
        http.post(f"{proxy.api}/chat/completions", json={"model": "deep", "messages": HI})
    assert wait_for(lambda: any(e.status == "client_disconnected" for e in proxy.entries().values()))
    entry = next(e for e in proxy.entries().values() if e.status == "client_disconnected")
    assert entry.output_tokens == 6 and entry.cost_usd > 0  # the first round's three answers, two words each
