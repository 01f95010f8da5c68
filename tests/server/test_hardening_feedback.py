"""Only the key that made a request, or an admin key, may grade it on /v1/feedback (issue 10, item 7),
with the in-process ledger and with the Redis ledger (whose script does the check)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from router.auth import key_digest
from router.ledger import LedgerConfig, MemoryLedger, RedisLedger, open_sync_ledger
from router.ledger.base import Ledger
from router.server import ServerSettings, create_app
from tests.server.conftest import REDIS_URL, wait_ready
from tests.server.support import FakeBackends, KeywordScorer, ServerThread, fake_tiers, write_policy

KEYS = {"alice": "sk-alice-0123456789", "bob": "sk-bob-0123456789", "ops": "sk-ops-0123456789"}
SERVER = f"""
server:
  api_keys:
    - {{name: alice, sha256: {key_digest(KEYS["alice"])}}}
    - {{name: bob, sha256: {key_digest(KEYS["bob"])}}}
    - {{name: ops, sha256: {key_digest(KEYS["ops"])}, admin: true}}
"""


@pytest.fixture(params=["memory", "redis"])
def served(request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str) -> Iterator[tuple[str, Ledger, str]]:
    """A proxy with three keys (ops is admin) on the given ledger; yields its URL, the ledger, the prefix."""
    ledger: Ledger = (
        MemoryLedger(LedgerConfig())
        if request.param == "memory"
        else RedisLedger(LedgerConfig(redis_url=REDIS_URL, key_prefix=redis_prefix))
    )
    settings = ServerSettings(
        config=write_policy(tmp_path / "router.yaml", extra=SERVER), reload_interval_s=0, gc_freeze=False
    )
    app = create_app(settings, backends=FakeBackends(fake_tiers()), ledger=ledger,
                     classifier_loader=lambda path, model: KeywordScorer())
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(ServerThread(app))
        wait_ready(app.state.runtime)
        yield server.url, ledger, redis_prefix


def ask(url: str, who: str) -> str:
    response = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {KEYS[who]}"}, timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-router-request-id"]


def grade(url: str, who: str, request_id: str, score: float) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/feedback", json={"request_id": request_id, "score": score},
        headers={"authorization": f"Bearer {KEYS[who]}"}, timeout=10,
    )


def recorded(ledger: Ledger, prefix: str, *request_ids: str) -> None:
    """Wait until the ledger holds these requests (the Redis ledger may write just after the answer)."""
    if isinstance(ledger, MemoryLedger):
        return
    with redis.Redis.from_url(REDIS_URL) as client:
        deadline = time.monotonic() + 10
        while not all(client.exists(f"{prefix}req:{rid}") for rid in request_ids):
            assert time.monotonic() < deadline, "the ledger never recorded the requests"
            time.sleep(0.02)


def scores(ledger: Ledger, prefix: str) -> dict[str, float | None]:
    if isinstance(ledger, MemoryLedger):
        records = ledger.records()
    else:
        reader = open_sync_ledger(LedgerConfig(redis_url=REDIS_URL, key_prefix=prefix))
        records = reader.records()
        reader.close()
    return {stored.entry.request_id: stored.score for stored in records}


def test_feedback_comes_from_the_key_that_asked_or_an_admin(served: tuple[str, Ledger, str]) -> None:
    url, ledger, prefix = served
    alices, bobs = ask(url, "alice"), ask(url, "bob")
    recorded(ledger, prefix, alices, bobs)

    stolen = grade(url, "bob", alices, 0.0)
    assert stolen.status_code == 404, stolen.text
    error = stolen.json()["error"]
    assert error["type"] == "invalid_request_error" and "made with this API key" in error["message"]
    assert scores(ledger, prefix)[alices] is None  # bob's verdict changed nothing

    assert grade(url, "alice", alices, 1.0).status_code == 200
    assert grade(url, "bob", bobs, 0.5).status_code == 200
    assert grade(url, "ops", bobs, 0.25).status_code == 200  # an admin key grades any request
    assert grade(url, "bob", alices, 0.0).status_code == 404
    assert scores(ledger, prefix) == {alices: 1.0, bobs: 0.25}
    unknown = grade(url, "ops", "no-such-request", 1.0)
    assert unknown.status_code == 404


def test_without_keys_anyone_grades(tmp_path: Path) -> None:
    ledger = MemoryLedger(LedgerConfig())
    settings = ServerSettings(config=write_policy(tmp_path / "router.yaml"), reload_interval_s=0, gc_freeze=False)
    app = create_app(settings, backends=FakeBackends(fake_tiers()), ledger=ledger,
                     classifier_loader=lambda path, model: KeywordScorer())
    with ServerThread(app) as server:
        wait_ready(app.state.runtime)
        answered = httpx.post(f"{server.url}/v1/chat/completions",
                              json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
        request_id = answered.headers["x-router-request-id"]
        assert httpx.post(f"{server.url}/v1/feedback", json={"request_id": request_id, "correct": True}).status_code == 200
