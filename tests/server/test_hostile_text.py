"""Lone UTF-16 surrogate escapes (a string cut through an emoji) are a 400 at the edge, wherever they
stand, and never fail the routed requests that share their classifier batch."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.server.conftest import StartProxy

GOOD = b'{"model": "router", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}'
# Each puts a lone high surrogate somewhere else: content, model, a parameter name, a message key, the role, metadata.
BAD = [
    b'{"model": "router", "messages": [{"role": "user", "content": "hi \\ud800 there"}]}',
    b'{"model": "rou\\ud800ter", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "router", "\\udc00max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "router", "messages": [{"role": "user", "content": "hi", "\\ud800": 1}]}',
    b'{"model": "router", "messages": [{"role": "us\\ud800er", "content": "hi"}]}',
    b'{"model": "router", "metadata": {"app": "x\\ud800"}, "messages": [{"role": "user", "content": "hi"}]}',
]
PAIR = '{"model": "router", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'.encode()


def test_lone_surrogates_are_400_and_spare_their_batch(start_proxy: StartProxy) -> None:
    proxy = start_proxy()

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            bodies = [GOOD] * 24 + BAD + [PAIR]
            return await asyncio.gather(
                *(client.post("/v1/chat/completions", content=b, headers={"content-type": "application/json"}) for b in bodies)
            )

    responses = asyncio.run(send_all())
    good, bad, pair = responses[:24], responses[24:-1], responses[-1]
    assert [r.status_code for r in good] == [200] * 24
    assert pair.status_code == 200  # a whole surrogate pair is an ordinary character
    for response in bad:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_json" and "surrogate" in error["message"]
        assert response.headers["x-router-request-id"]
    assert len(proxy.entries()) == 25  # every served request is in the ledger, no refused one is


@pytest.mark.parametrize("path", ["/v1/feedback"])
def test_other_bodies_follow_the_same_rule(start_proxy: StartProxy, path: str) -> None:
    proxy = start_proxy()
    response = httpx.post(
        proxy.url + path, content=b'{"request_id": "a\\ud800", "correct": true}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "surrogate" in response.json()["error"]["message"]
