"""The optional `server:` section of router.yaml: validated like the rest, errors with path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import load_policy
from core.errors import PolicyError
from tests.server.support import write_policy


def test_a_valid_server_section_loads(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path / "router.yaml", extra="""
    server:
      api_keys:
        - {name: app, key_env: APP_KEY, requests_per_minute: 5}
        - {name: other, sha256: "%s"}
      rate_limit: {requests_per_minute: 60, burst: 10}
      passthrough: {models: ["gpt-*"], fallbacks: [fast], price: {input_per_million: 1, output_per_million: 2}}
    """ % ("ab" * 32)))
    server = policy.config.server
    assert [key.name for key in server.api_keys] == ["app", "other"]
    assert server.rate_limit.burst == 10 and server.passthrough.fallbacks == ["fast"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("server:\n  api_keys: [{name: a, key_env: A, sha256: '%s'}]\n" % ("ab" * 32),
         "server.api_keys[0]: give exactly one of key_env or sha256"),
        ("server:\n  api_keys: [{name: a, key_env: A}, {name: a, key_env: B}]\n", "server.api_keys[1].name: 'a' is used twice"),
        ("server:\n  api_keys: [{name: a, sha256: nothex}]\n", "server.api_keys[0].sha256"),
        ("server:\n  passthrough: {models: ['x'], fallbacks: [nope]}\n", "server.passthrough.fallbacks[0]: no tier named 'nope'"),
        ("server:\n  passthrough: {price: {input_per_million: 1}}\n", "server.passthrough.price: give both"),
        ("server:\n  rate_limit: {requests_per_minute: 0}\n", "server.rate_limit.requests_per_minute"),
        ("server:\n  colour: blue\n", "server.colour"),
    ],
)
def test_server_section_errors_name_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write_policy(tmp_path / "router.yaml", extra=extra))
    assert message in str(caught.value)
    assert "line" in str(caught.value)


def test_settings_mask_secrets_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from router.server import ServerSettings

    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("ROUTER_API_KEYS", "sk-one, sk-two")
    settings = ServerSettings()
    assert settings.redis_url is not None and settings.redis_url.get_secret_value().endswith("/0")
    assert [key.get_secret_value() for key in settings.api_keys] == ["sk-one", "sk-two"]
    shown = repr(settings)
    assert "hunter2" not in shown and "sk-one" not in shown
