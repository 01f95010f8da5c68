"""Fixtures for the proxy: a real upstream, the proxy itself in a uvicorn thread, the real Redis."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router.backends import Backend
from router.ledger import LedgerConfig, LedgerEntry, MemoryLedger
from router.server import ServerSettings, create_app
from tests.conftest import redis_or_skip, redis_url_for
from router.server.runtime import Runtime
from tests.server.support import PASSTHROUGH, FakeBackends, KeywordScorer, ServerThread, fake_tiers, write_policy
from tests.server.upstream import Upstream

REDIS_URL = redis_url_for(9)  # the tests' Redis, database 9 (flushed by these tests)


@dataclass
class Proxy:
    """A running proxy and the parts a test may inspect."""

    url: str
    runtime: Runtime
    ledger: MemoryLedger
    scorer: KeywordScorer
    tiers: dict[str, Backend]
    policy_path: Path

    @property
    def api(self) -> str:
        return f"{self.url}/v1"

    def entries(self) -> dict[str, LedgerEntry]:
        """The ledger's records by request id."""
        return {stored.entry.request_id: stored.entry for stored in self.ledger.records()}

    def score(self, request_id: str) -> float | None:
        """The verdict recorded for a request, if any."""
        return next((s.score for s in self.ledger.records() if s.entry.request_id == request_id), None)


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    """A real OpenAI-compatible HTTP server on 127.0.0.1; yields the app and its /v1 base URL."""
    app = Upstream()
    with ServerThread(app) as server:
        yield app, f"{server.url}/v1"


StartProxy = Callable[..., Proxy]


def proxy_starter(directory: Path, stack: contextlib.ExitStack) -> StartProxy:
    """A function that starts proxies on fake tiers (or real backends); `stack` stops them."""

    def start(
        *, policy: Path | None = None, tiers: Mapping[str, Backend] | None = None, real_backends: bool = False,
        upstream_url: str = "http://127.0.0.1:9/v1", extra_yaml: str = "", **settings: Any,
    ) -> Proxy:
        name = f"router-{uuid.uuid4().hex[:6]}.yaml"
        path = policy or write_policy(directory / name, upstream=upstream_url, extra=extra_yaml)
        options: dict[str, Any] = {"config": path, "reload_interval_s": 0, "gc_freeze": False, **settings}
        backends = None if real_backends else FakeBackends(tiers if tiers is not None else fake_tiers())
        scorer, ledger = KeywordScorer(), MemoryLedger(LedgerConfig(store_prompts=True))
        app = create_app(
            ServerSettings(**options), backends=backends, ledger=ledger, classifier_loader=lambda path, model: scorer
        )
        server = stack.enter_context(ServerThread(app))
        runtime: Runtime = app.state.runtime
        wait_ready(runtime)
        return Proxy(server.url, runtime, ledger, scorer, dict(backends.tiers) if backends else {}, path)

    return start


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    """Start proxies for this test; they stop when it ends."""
    with contextlib.ExitStack() as stack:
        yield proxy_starter(tmp_path, stack)


@pytest.fixture(scope="module")
def start_module_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartProxy]:
    """Start proxies shared by a module's tests (for tables of cases)."""
    with contextlib.ExitStack() as stack:
        yield proxy_starter(tmp_path_factory.mktemp("proxy"), stack)


def wait_ready(runtime: Runtime, timeout_s: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while runtime.state == "starting" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime.state == "ready", runtime.failure


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis (db 9); its keys are deleted afterwards."""
    client = redis_or_skip(REDIS_URL)
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def served(start_module_proxy: StartProxy) -> Iterator[tuple[Proxy, Upstream]]:
    """One test upstream and one proxy (pass-through to it, real tiers on it) for a module; the upstream stops first."""
    app = Upstream()
    with ServerThread(app) as server:
        url = f"{server.url}/v1"
        yield start_module_proxy(real_backends=True, upstream_url=url, extra_yaml=PASSTHROUGH.format(url=url)), app
