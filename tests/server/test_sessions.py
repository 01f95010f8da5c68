"""Session-aware routing (server.sessions): a conversation keeps the tier it reached or moves up.

The test classifier scores prompts containing "hard" 0.9 (tier deep) and others 0.1 (tier fast);
deep costs more than fast. Pins live in this process without Redis, in the real Redis with it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from router.auth import key_digest
from router.server.sessions import MemoryPins
from tests.server.conftest import REDIS_URL, Proxy, StartProxy
from tests.server.support import write_policy

SESSIONS = """
server:
  sessions: {{enabled: true, idle_s: {idle_s}}}
"""
SYSTEM = {"role": "system", "content": "You are an agent."}


def sessions_yaml(idle_s: int = 600) -> str:
    return SESSIONS.format(idle_s=idle_s)


def turn(proxy: Proxy, text: str, session: str | None = "conv-1", *, history: list[Any] | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    """One routed turn; the conversation so far is `history` (the system message by default)."""
    sent = dict(headers or {})
    if session is not None:
        sent["x-session-id"] = session
    messages = [*(history if history is not None else [SYSTEM]), {"role": "user", "content": text}]
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        response = http.post("/chat/completions", json={"model": "router", "messages": messages}, headers=sent)
    assert response.status_code == 200, response.text
    return response


def served(response: httpx.Response) -> tuple[str, str, str]:
    return response.headers["x-router-tier"], response.headers["x-router-rule"], response.headers["x-router-difficulty"]


def test_a_conversation_keeps_the_tier_it_reached(start_proxy: StartProxy) -> None:
    proxy = start_proxy(extra_yaml=sessions_yaml())
    first = turn(proxy, "a hard question")
    second = turn(proxy, "thanks, and now an easy one")
    assert served(first) == ("deep", "hard", "0.9000")
    # Classified alone, the second turn would go to fast; the session holds it on deep, with the first turn's score.
    assert served(second) == ("deep", "session_pin", "0.9000")
    assert first.headers["x-router-session"] == second.headers["x-router-session"] == "conv-1"
    entries = proxy.entries()
    pinned = entries[second.headers["x-router-request-id"]]
    assert (pinned.rule, pinned.tier, pinned.difficulty) == ("session_pin", "deep", 0.9)
    assert pinned.extra["session"] == "conv-1"
    assert pinned.extra["first_difficulty"] == 0.9
    assert (pinned.extra["classified_tier"], pinned.extra["turn_difficulty"]) == ("fast", 0.1)
    classified = entries[first.headers["x-router-request-id"]]
    assert classified.rule == "hard" and classified.extra["session"] == "conv-1"
    assert "classified_tier" not in classified.extra


def test_a_conversation_moves_up_and_never_down(start_proxy: StartProxy) -> None:
    proxy = start_proxy(extra_yaml=sessions_yaml())
    tiers = [served(turn(proxy, text, "conv-up")) for text in ("easy", "still easy", "now hard", "easy again")]
    assert tiers == [
        ("fast", "easy", "0.1000"),
        ("fast", "session_pin", "0.1000"),  # the pin costs as much as the classified tier
        ("deep", "hard", "0.9000"),  # classified higher: the pin moves up, the decision is the classifier's
        ("deep", "session_pin", "0.1000"),  # held on deep; the difficulty shown is still the first turn's
    ]
    last = max(proxy.entries().values(), key=lambda entry: entry.timestamp)
    assert last.extra["first_difficulty"] == 0.1 and last.extra["turn_difficulty"] == 0.1


def test_without_a_header_the_key_and_the_opening_identify_the_conversation(start_proxy: StartProxy) -> None:
    proxy = start_proxy(extra_yaml=sessions_yaml())
    opening = [SYSTEM, {"role": "user", "content": "plan a hard trip"}]
    first = turn(proxy, "plan a hard trip", None)
    later = turn(proxy, "and the hotel?", None, history=[*opening, {"role": "assistant", "content": "ok"}])
    other = turn(proxy, "an easy thing", None)  # another opening: another conversation
    assert first.headers["x-router-session"] == later.headers["x-router-session"]
    assert len(first.headers["x-router-session"]) == 32
    assert served(later)[:2] == ("deep", "session_pin")
    assert other.headers["x-router-session"] != first.headers["x-router-session"]
    assert served(other)[:2] == ("fast", "easy")


def test_the_router_session_header_and_a_configured_header_are_accepted(start_proxy: StartProxy) -> None:
    proxy = start_proxy(extra_yaml="server:\n  sessions: {enabled: true, header: x-conversation}\n")
    turn(proxy, "hard", None, headers={"x-conversation": "c-9"})
    by_router_header = turn(proxy, "easy", None, headers={"x-router-session": "c-9"})
    by_default_header = turn(proxy, "easy", "c-9")  # not the configured header: an opening hash instead
    assert served(by_router_header)[:2] == ("deep", "session_pin")
    assert by_router_header.headers["x-router-session"] == "c-9"
    assert by_default_header.headers["x-router-session"] != "c-9"


def test_a_bad_session_id_is_a_400_naming_the_header(start_proxy: StartProxy) -> None:
    proxy = start_proxy(extra_yaml=sessions_yaml())
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        response = http.post(
            "/chat/completions", json={"model": "router", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-session-id": "has spaces"},
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "x-session-id" and error["code"] == "invalid_session_id"
    assert "1 to 128" in error["message"]


def test_sessions_are_off_by_default_and_forced_tiers_are_never_pinned(start_proxy: StartProxy) -> None:
    plain = start_proxy()
    turn(plain, "hard")
    response = turn(plain, "easy")
    assert served(response)[:2] == ("fast", "easy")
    assert "x-router-session" not in response.headers
    on = start_proxy(extra_yaml=sessions_yaml())
    turn(on, "hard")
    with httpx.Client(base_url=on.api, timeout=10) as http:
        forced = http.post(
            "/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "easy"}]},
            headers={"x-session-id": "conv-1"},
        )
    assert (forced.headers["x-router-tier"], forced.headers["x-router-rule"]) == ("fast", "forced")
    assert "x-router-session" not in forced.headers


KEYS = """
  api_keys:
    - {{name: alice, sha256: {alice}}}
    - {{name: bob, sha256: {bob}}}
"""


def test_a_client_id_is_scoped_by_api_key(start_proxy: StartProxy) -> None:
    keys = KEYS.format(alice=key_digest("sk-alice-000000"), bob=key_digest("sk-bob-0000000"))
    proxy = start_proxy(extra_yaml=sessions_yaml() + keys)
    turn(proxy, "hard", "shared", headers={"authorization": "Bearer sk-alice-000000"})
    bob = turn(proxy, "easy", "shared", headers={"authorization": "Bearer sk-bob-0000000"})
    alice = turn(proxy, "easy", "shared", headers={"authorization": "Bearer sk-alice-000000"})
    assert served(bob)[:2] == ("fast", "easy")  # alice's pin does not reach bob's conversation of the same id
    assert served(alice)[:2] == ("deep", "session_pin")


def test_replicas_share_pins_through_redis(start_proxy: StartProxy, redis_prefix: str, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "router.yaml", extra=sessions_yaml(idle_s=300))
    one = start_proxy(policy=policy, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    two = start_proxy(policy=policy, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    assert served(turn(one, "hard", "conv-r"))[:2] == ("deep", "hard")
    assert served(turn(two, "easy", "conv-r"))[:2] == ("deep", "session_pin")
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        (key,) = client.keys(f"{redis_prefix}session:*")
        assert client.hgetall(key) == {"tier": "deep", "difficulty": "0.9"}
        assert 0 < client.pttl(key) <= 300_000  # the idle time, renewed by each turn
    finally:
        client.close()


def test_a_pin_is_forgotten_after_the_idle_time(start_proxy: StartProxy, redis_prefix: str) -> None:
    proxy = start_proxy(extra_yaml=sessions_yaml(idle_s=1), redis_url=REDIS_URL, redis_prefix=redis_prefix)
    turn(proxy, "hard", "conv-idle")
    time.sleep(1.3)  # past idle_s: Redis has expired the pin
    assert served(turn(proxy, "easy", "conv-idle"))[:2] == ("fast", "easy")


def test_a_redis_outage_routes_as_classified(start_proxy: StartProxy) -> None:
    proxy = start_proxy(extra_yaml=sessions_yaml(), redis_url="redis://127.0.0.1:9/0")  # nothing listens there
    turn(proxy, "hard", "conv-down")
    response = turn(proxy, "easy", "conv-down")
    assert served(response)[:2] == ("fast", "easy")
    assert response.headers["x-router-session"] == "conv-down"
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        metrics = http.get("/metrics").text
    assert 'router_redis_failures_total{action="lost",operation="session"} 2.0' in metrics


def test_the_in_process_store_is_bounded_and_least_recently_used_goes_first() -> None:
    async def scenario() -> list[Any]:
        pins = MemoryPins(max_sessions=2)
        order = ("fast", "deep")
        await pins.pin("a", "deep", 0.9, order, 600)
        await pins.pin("b", "fast", 0.1, order, 600)
        await pins.pin("a", "fast", 0.2, order, 600)  # touches a: b is now the least recently used
        await pins.pin("c", "fast", 0.3, order, 600)  # over the bound: b goes
        return [len(pins), await pins.pin("a", "fast", 0.5, order, 600), await pins.pin("b", "fast", 0.6, order, 600)]

    size, a, b = asyncio.run(scenario())
    assert size == 2
    assert (a.tier, a.first_difficulty, a.held) == ("deep", 0.9, True)
    assert (b.tier, b.first_difficulty, b.held) == ("fast", 0.6, False)  # forgotten: a new conversation
