"""Spend by tier and app in Prometheus (bounded app labels), cost per request, time to first token."""

from __future__ import annotations

import re

import httpx
import pytest

from router.server.metrics import AppLabels
from tests.server.conftest import StartProxy
from tests.server.upstream import Upstream


def _samples(text: str, name: str) -> dict[str, float]:
    """`{labels: value}` of one metric in a Prometheus text exposition."""
    found = re.findall(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.M)
    return {labels: float(value) for labels, value in found}


def test_cost_by_tier_and_app_and_per_request(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    for text, app in (("hi", "docs"), ("a hard one", "docs"), ("hi", None)):
        body: dict[str, object] = {"model": "router", "messages": [{"role": "user", "content": text}]}
        if app:
            body["metadata"] = {"app": app}
        assert httpx.post(f"{proxy.api}/chat/completions", json=body, timeout=30).status_code == 200
    metrics = httpx.get(f"{proxy.url}/metrics").text
    by_app = _samples(metrics, "router_app_cost_usd_total")
    assert set(by_app) == {'{app="docs",tier="fast"}', '{app="docs",tier="deep"}', '{app="none",tier="fast"}'}
    assert all(value > 0 for value in by_app.values())
    assert sum(by_app.values()) == sum(_samples(metrics, "router_cost_usd_total").values())
    counts = _samples(metrics, "router_request_cost_usd_count")
    assert counts == {'{tier="fast"}': 2.0, '{tier="deep"}': 1.0}


def test_time_to_first_token_of_streamed_requests(start_proxy: StartProxy, upstream: tuple[Upstream, str]) -> None:
    proxy = start_proxy(real_backends=True, upstream_url=upstream[1])
    body = {"model": "fast", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{proxy.api}/chat/completions", json=body, timeout=30) as reply:
        assert reply.status_code == 200
        assert "[DONE]" in "".join(reply.iter_text())
    plain = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{proxy.api}/chat/completions", json=plain, timeout=30).status_code == 200
    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert _samples(metrics, "router_time_to_first_token_seconds_count") == {'{tier="fast"}': 1.0}  # streamed only


def test_app_labels_are_bounded() -> None:
    first_seen = AppLabels(limit=2)
    assert [first_seen.label(a) for a in ("a", "b", "c", "a", None, "")] == ["a", "b", "other", "a", "none", "none"]
    allowed = AppLabels(frozenset({"support"}))
    assert [allowed.label(a) for a in ("support", "x")] == ["support", "other"]


def test_app_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_METRICS_APPS", "support, search")
    assert AppLabels.from_environment().allowed == frozenset({"support", "search"})
