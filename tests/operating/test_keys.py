"""`router keys` on the real Redis, and a real proxy reading those keys per request (no restart)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from typer.testing import CliRunner

from router.auth import REDIS_KEYS_HASH, KeyRecord, key_digest
from router.cli import app
from tests.server.conftest import REDIS_URL, Proxy, StartProxy

runner = CliRunner()
REDIS_KEYS = "server:\n  redis_api_keys: true\n"


def keys(prefix: str, *args: str) -> str:
    result = runner.invoke(app, ["keys", *args, "--redis-url", REDIS_URL, "--prefix", prefix])
    assert result.exit_code == 0, result.output
    return result.stdout


def create(prefix: str, name: str, *options: str) -> str:
    """Create a key; its secret is the one line on stdout."""
    out = keys(prefix, "create", name, *options).strip()
    assert "\n" not in out and out.startswith("sk-router-")
    return out


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield connection
    connection.close()


@pytest.fixture
def proxy(start_proxy: StartProxy, redis_prefix: str) -> Proxy:
    return start_proxy(redis_url=REDIS_URL, redis_prefix=redis_prefix, extra_yaml=REDIS_KEYS)


def chat(proxy: Proxy, secret: str, text: str = "hi", **body: object) -> httpx.Response:
    return httpx.post(
        f"{proxy.api}/chat/completions", headers={"authorization": f"Bearer {secret}"},
        json={"model": "fast", "messages": [{"role": "user", "content": text}], **body}, timeout=30,
    )


def test_a_created_key_works_at_once_is_hashed_at_rest_and_its_tags_are_its_identity(
    proxy: Proxy, redis_prefix: str, client: redis.Redis
) -> None:
    assert chat(proxy, "sk-router-nope").json()["error"]["code"] == "invalid_api_key"
    secret = create(redis_prefix, "support-bot", "--tag", "app=support", "--tag", "team=search", "--rpm", "100")
    stored = client.hgetall(f"{redis_prefix}{REDIS_KEYS_HASH}")
    assert list(stored) == [key_digest(secret)]
    assert secret not in json.dumps(stored)
    record = KeyRecord.from_json(stored[key_digest(secret)])
    assert record.tags == (("app", "support"), ("team", "search")) and record.requests_per_minute == 100

    reply = chat(proxy, secret, metadata={"app": "someone-else"})  # no restart: read from Redis per request
    assert reply.status_code == 200, reply.text
    entry = proxy.entries()[reply.headers["x-router-request-id"]]
    assert entry.key_tag == "support-bot" and entry.app == "support"  # the key's tag wins over the client's

    listed = keys(redis_prefix, "list")
    assert "support-bot" in listed and "app=support" in listed and key_digest(secret)[:12] in listed
    assert secret not in listed
    assert runner.invoke(app, ["keys", "create", "support-bot", "--redis-url", REDIS_URL, "--prefix", redis_prefix]).exit_code == 2


def test_rotate_revoke_and_expiry_take_effect_without_a_restart(
    proxy: Proxy, redis_prefix: str, client: redis.Redis
) -> None:
    old = create(redis_prefix, "batch", "--expires", "30d")
    assert chat(proxy, old).status_code == 200
    new = keys(redis_prefix, "rotate", "batch").strip()
    assert new != old
    assert chat(proxy, old).json()["error"]["code"] == "invalid_api_key"
    assert chat(proxy, new).status_code == 200

    graced = keys(redis_prefix, "rotate", "batch", "--grace", "1h").strip()
    assert chat(proxy, new).status_code == 200 and chat(proxy, graced).status_code == 200  # both, during the grace

    # Time passing, as Redis will see it: the graced secret's expiry moves into the past.
    field = f"{redis_prefix}{REDIS_KEYS_HASH}"
    record = KeyRecord.from_json(client.hget(field, key_digest(new)) or "")
    past = KeyRecord(**{**{s: getattr(record, s) for s in KeyRecord.__slots__}, "expires_at": time.time() - 1})
    client.hset(field, key_digest(new), past.to_json())
    expired = chat(proxy, new)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "expired_api_key"
    views = [json.loads(line) for line in keys(redis_prefix, "list", "--json").splitlines()]
    assert sorted(view["expired"] for view in views) == [False, True]

    keys(redis_prefix, "revoke", "batch")
    assert chat(proxy, graced).json()["error"]["code"] == "invalid_api_key"
    assert client.hlen(field) == 0


def test_a_keys_daily_budget_and_token_limit_are_enforced(proxy: Proxy, redis_prefix: str) -> None:
    broke = create(redis_prefix, "broke", "--daily-budget", "0")
    refused = chat(proxy, broke)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"

    for _ in range(3):  # a minute boundary between the two requests resets the window: try again
        minute = int(time.time() // 60)
        thrifty = create(redis_prefix, f"thrifty-{minute}-{time.monotonic_ns()}", "--tpm", "1")
        assert chat(proxy, thrifty).status_code == 200  # uses more than 1 token: the next one waits
        second = chat(proxy, thrifty)
        if int(time.time() // 60) == minute:
            assert second.status_code == 429, second.text
            assert "Token rate limit" in second.json()["error"]["message"] and "retry-after" in second.headers
            return
    pytest.fail("three minute boundaries in a row")


def test_records_written_before_tags_and_limits_still_work(proxy: Proxy, redis_prefix: str, client: redis.Redis) -> None:
    secret = "sk-test-legacy-0123456789"
    client.hset(f"{redis_prefix}{REDIS_KEYS_HASH}", key_digest(secret),
                json.dumps({"name": "legacy", "requests_per_minute": None, "admin": False}))
    reply = chat(proxy, secret)
    assert reply.status_code == 200
    assert proxy.entries()[reply.headers["x-router-request-id"]].key_tag == "legacy"
    assert "legacy" in keys(redis_prefix, "list")


def test_bad_options_are_named() -> None:
    for args, message in (
        (["create", "x", "--tag", "app"], "--tag takes NAME=VALUE"),
        (["create", "x", "--tag", "key=me"], "reserved"),
        (["create", "x", "--expires", "soon"], "--expires takes a duration"),
        (["create", "x", "--expires", "2001-01-01"], "in the past"),
    ):
        result = runner.invoke(app, ["keys", *args, "--redis-url", REDIS_URL])
        assert result.exit_code == 2 and message in result.output, result.output
    result = runner.invoke(app, ["keys", "list"], env={"REDIS_URL": ""})
    assert result.exit_code == 2 and "needs Redis" in result.output
