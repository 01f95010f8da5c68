"""A router.yaml rewritten in place, in two parts seconds apart, never opens the proxy (issue 10, item 3)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from router.auth import key_digest
from tests.server.conftest import Proxy, StartProxy
from tests.server.support import write_policy

APP_KEY = "sk-h5-reload-0123456789"
HI = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
SERVER = f"""
server:
  api_keys:
    - {{name: app, sha256: {key_digest(APP_KEY)}}}
"""


def chat(proxy: Proxy, key: str | None = None) -> int:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{proxy.api}/chat/completions", json=HI, headers=headers, timeout=10).status_code


def write_in_two_parts(path: Path, text: str, split_at: str, pause_s: float) -> None:
    """Truncate the file and write `text` in place: up to `split_at`, a pause, then the rest."""
    cut = text.index(split_at)
    with path.open("w") as handle:
        handle.write(text[:cut])
        handle.flush()
        time.sleep(pause_s)
        handle.write(text[cut:])


def test_a_half_written_file_never_lets_a_request_without_a_key_through(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "router.yaml", extra=SERVER)
    proxy = start_proxy(policy=policy, reload_interval_s=0.05)
    live = proxy.runtime.store.policy.version
    assert chat(proxy) == 401 and chat(proxy, APP_KEY) == 200
    # The same policy with one more rule: its first part (no server section) is a valid policy
    # without API keys, and stays on disk for 2.5 s, longer than the 1 s settle time.
    edited = policy.read_text().replace("rules:\n", "rules:\n  - name: pinned\n    when: {model: pinned}\n    tier: deep\n")
    writer = threading.Thread(target=write_in_two_parts, args=(policy, edited, "\nserver:", 2.5))
    statuses: list[int] = []
    writer.start()
    while writer.is_alive():
        statuses.append(chat(proxy))
        time.sleep(0.02)
    writer.join()
    assert statuses and set(statuses) == {401}, statuses
    # The whole edit settles and goes live; keys are still required.
    deadline = time.monotonic() + 10
    while proxy.runtime.store.policy.version == live and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.runtime.store.policy.version != live
    assert chat(proxy) == 401 and chat(proxy, APP_KEY) == 200
    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert 'router_policy_reloads_total{outcome="auth_downgrade_refused"} 1.0' in metrics
    assert 'router_policy_reloads_total{outcome="applied"} 1.0' in metrics
