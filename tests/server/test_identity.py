"""Identity comes from authentication only: a client cannot borrow another key's routing rule by
naming it in `metadata.key`, with a key or without one."""

from __future__ import annotations

import httpx

from tests.server.conftest import StartProxy

KEYS = """
server:
  api_keys:
    - {name: alice, key_env: TEST_ALICE_KEY}
    - {name: bob, key_env: TEST_BOB_KEY}
"""
# Prepended to the test policy's rules: alice's requests always go to the deep tier.
ALICE_RULE = "  - name: alice-deep\n    when: {metadata: {key: alice}}\n    tier: deep\n"


def test_metadata_key_cannot_borrow_another_keys_rule(start_proxy: StartProxy, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.server.support import write_policy

    monkeypatch.setenv("TEST_ALICE_KEY", "sk-alice-0123456789")
    monkeypatch.setenv("TEST_BOB_KEY", "sk-bob-0123456789")
    path = write_policy(tmp_path / "router.yaml", extra=KEYS)
    path.write_text(path.read_text().replace("rules:\n", "rules:\n" + ALICE_RULE, 1))
    proxy = start_proxy(policy=path)

    def tier(key: str, metadata: dict[str, str]) -> str:
        response = httpx.post(
            f"{proxy.url}/v1/chat/completions",
            json={"model": "router", "messages": [{"role": "user", "content": "easy one"}], "metadata": metadata},
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        return response.headers["x-router-tier"]

    assert tier("sk-alice-0123456789", {}) == "deep"
    assert tier("sk-bob-0123456789", {"key": "alice"}) == "fast"  # bob cannot borrow alice's rule
    assert tier("sk-bob-0123456789", {"key": "alice", "app": "x"}) == "fast"
    entries = list(proxy.entries().values())
    assert sorted(e.key_tag or "" for e in entries) == ["alice", "bob", "bob"]
