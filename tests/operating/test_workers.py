"""`router serve --workers 2` as an operator runs it: a real process tree, real uvicorn workers, the
shipped classifier loading in each; /readyz waits for both, /metrics sums both, logs show, and it
stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.server.support import ServerThread, write_policy
from tests.conftest import free_port
from tests.server.upstream import Upstream

WORKERS = 2


def _metric(text: str, name: str) -> float:
    """The sum of every sample of `name` (all label sets) in a Prometheus text exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


@pytest.fixture
def upstream_url() -> Iterator[str]:
    with ServerThread(Upstream()) as server:
        yield f"{server.url}/v1"


def test_two_workers_ready_together_serve_and_aggregate(upstream_url: str, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "router.yaml", upstream=upstream_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    command = [sys.executable, "-m", "router", "serve", "--workers", str(WORKERS), "--port", str(port),
               "--config", str(policy), "--access-log"]
    server = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 500  # each worker loads the classifier: a minute on a busy 2-core box
            body: dict[str, object] = {}
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    reply = client.get("/readyz")
                except (httpx.TransportError, httpx.TimeoutException):  # up, or busy importing torch
                    time.sleep(0.1)
                    continue
                statuses.append(reply.status_code)
                body = reply.json()
                if reply.status_code == 200:
                    break
                assert reply.status_code == 503 and reply.headers["retry-after"] == "2"
                assert client.get("/livez").status_code == 200  # alive while not ready
                time.sleep(0.1)
            assert statuses and statuses[-1] == 200, (statuses[-5:], server.poll())
            assert body == {**body, "status": "ready", "workers_ready": WORKERS, "workers": WORKERS}
            # Ready means every worker: no request is refused as "starting" from here on, whichever
            # worker the kernel hands the connection to (a new connection each time).
            codes = []
            for i in range(24):
                with httpx.Client(base_url=base, timeout=60) as fresh:
                    codes.append(fresh.post("/v1/chat/completions", json={
                        "model": "router", "messages": [{"role": "user", "content": f"What is {i} + 1?"}],
                    }).status_code)
            assert codes == [200] * 24
            metrics = client.get("/metrics").text
            assert _metric(metrics, "router_ready") == WORKERS  # both workers' gauges, in one scrape
            assert _metric(metrics, "router_requests_total") == 24  # both workers' counters summed
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, stderr = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate()
    assert server.returncode == 0, stderr[-3000:]
    # The app's own INFO lines show in worker mode, once per worker.
    assert len(re.findall(r"INFO router\.server\.runtime: ready in", stderr)) == WORKERS, stderr[-3000:]
    assert len(re.findall(r"INFO router\.access: chat request", stderr)) == 24
    assert "leaked semaphore" not in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
