"""/livez and /readyz on a real proxy, worker readiness markers, and structured access logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from router.server.logs import JsonFormatter, TextFormatter, log_config
from router.server.readiness import WorkerReadiness
from tests.server.conftest import StartProxy


def test_livez_and_readyz_on_one_process(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    live = httpx.get(f"{proxy.url}/livez")
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    ready = httpx.get(f"{proxy.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {**ready.json(), "status": "ready", "workers_ready": 1, "workers": 1}
    assert httpx.head(f"{proxy.url}/readyz").status_code == 200
    assert httpx.get(f"{proxy.url}/healthz").json()["status"] == "ready"  # unchanged


def test_readyz_is_503_while_this_process_loads(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    proxy.runtime.state = "starting"  # as before _load ends
    reply = httpx.get(f"{proxy.url}/readyz")
    assert reply.status_code == 503 and reply.headers["retry-after"] == "2"
    assert reply.json()["status"] == "starting"
    assert httpx.get(f"{proxy.url}/livez").status_code == 200


def test_server_is_ready_only_when_every_living_worker_is(tmp_path: Path) -> None:
    here = WorkerReadiness(tmp_path, workers=2)
    here.mark_ready()
    assert here.ready_workers() == 1 and not here.all_ready()
    (tmp_path / "ready-999999999").write_text("")  # a worker that died: its marker does not count
    assert not here.all_ready()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f"ready-{other.pid}").write_text("")  # another living worker, ready
        assert here.ready_workers() == 2 and here.all_ready()
        here.clear()
        assert not here.all_ready() and not (tmp_path / f"ready-{os.getpid()}").exists()
    finally:
        other.kill()
        other.wait()


def test_readiness_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerReadiness.from_environment().folder is None
    monkeypatch.setenv("ROUTER_SERVE_READY_DIR", str(tmp_path))
    monkeypatch.setenv("ROUTER_SERVE_WORKERS", "3")
    readiness = WorkerReadiness.from_environment()
    assert readiness.folder == tmp_path and readiness.workers == 3


def test_access_log_line_per_chat_request(start_proxy: StartProxy, caplog: pytest.LogCaptureFixture) -> None:
    proxy = start_proxy()
    caplog.set_level(logging.INFO, logger="router.access")
    reply = httpx.post(f"{proxy.api}/chat/completions", json={
        "model": "router", "messages": [{"role": "user", "content": "a hard question"}], "metadata": {"app": "docs"},
    })
    assert reply.status_code == 200
    records = [r for r in caplog.records if r.name == "router.access"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    entry = proxy.entries()[reply.headers["x-router-request-id"]]
    assert fields["request_id"] == reply.headers["x-router-request-id"]
    assert fields["tier"] == "deep" and fields["rule"] == "hard" and fields["strategy"] == entry.strategy
    assert fields["samples"] == 3 and fields["app"] == "docs" and fields["key"] == "anonymous"
    assert fields["input_tokens"] == entry.input_tokens and fields["output_tokens"] == entry.output_tokens
    assert fields["cost_usd"] == entry.cost_usd > 0 and fields["latency_s"] > 0
    assert fields["status"] == "ok" and fields["http_status"] == 200
    # JSON lines carry the fields as keys; text lines as key=value.
    body = json.loads(JsonFormatter().format(records[0]))
    assert body["logger"] == "router.access" and body["message"] == "chat request" and body["tier"] == "deep"
    assert body["ts"].endswith("Z") and body["cost_usd"] == entry.cost_usd
    text = TextFormatter().format(records[0])
    assert text.startswith("INFO router.access: chat request request_id=") and " tier=deep " in text


def test_access_log_is_off_without_the_flag() -> None:
    assert log_config("text")["loggers"]["router.access"]["level"] == "WARNING"
    on = log_config("json", access_log=True)
    assert on["loggers"]["router.access"]["level"] == "INFO"
    assert on["formatters"]["default"]["()"].endswith("JsonFormatter")


def test_json_log_format_from_the_environment_in_a_real_server(tmp_path: Path) -> None:
    """`ROUTER_LOG_FORMAT=json router serve`: every line on stderr is a JSON object."""
    from tests.conftest import free_port
    from tests.server.support import serving, write_policy

    policy = write_policy(tmp_path / "router.yaml")
    port = free_port()
    env = {**os.environ, "ROUTER_LOG_FORMAT": "json", "ROUTER_PRELOAD": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "router", "serve", "--port", str(port), "--config", str(policy)],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        if not serving(port):
            pytest.fail("the server did not become ready")
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(line["logger"] == "router.server.runtime" and line["message"].startswith("ready in") for line in lines)
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
