"""The proxy and `router classifier score` run on onnxruntime alone: neither imports torch.

Each check runs in a fresh interpreter, since this test process may have torch loaded already
(other tests use the sentence-transformers encoder). The base install has no torch at all; here
torch is installed (the `train` extra), so the check is that nothing on these paths imports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "sentence_transformers")

PROXY = """
import asyncio, json, sys
from pathlib import Path

import httpx

from router.server import ServerSettings, create_app
from tests.server.conftest import wait_ready
from tests.server.support import FakeBackends, ServerThread, fake_tiers, write_policy

extra = sys.argv[2] if len(sys.argv) > 2 else ""
app = create_app(
    ServerSettings(config=write_policy(Path(sys.argv[1]) / "router.yaml", extra=extra), reload_interval_s=0),
    backends=FakeBackends(fake_tiers()),
)
with ServerThread(app) as server:
    wait_ready(app.state.runtime, timeout_s=60)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        body = {"model": "router", "messages": [{"role": "user", "content": "Prove the Riemann hypothesis."}]}
        first, again = http.post("/v1/chat/completions", json=body), http.post("/v1/chat/completions", json=body)
        metrics = http.get("/metrics").text
print(json.dumps({
    "status": [first.status_code, again.status_code],
    "difficulty": [first.headers.get("x-router-difficulty"), again.headers.get("x-router-difficulty")],
    "cache": app.state.runtime.scorers.cache_stats(),
    "stages": list(vars(app.state.runtime.scorers.stage_counts()).values()),
    "stage_metric": sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                        if line.startswith("router_classifier_stage_total")),
    "heavy": [name for name in %r if name in sys.modules],
}))
"""

SCORE = """
import json, sys
from typer.testing import CliRunner
from router.cli import app

folder = sys.argv[1]
result = CliRunner().invoke(app, ["classifier", "score", "--input", f"{folder}/in.jsonl", "--output", f"{folder}/out.jsonl"])
print(json.dumps({"exit": result.exit_code, "output": result.output, "heavy": [n for n in %r if n in sys.modules]}))
"""


def _run(code: str, folder: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code % (HEAVY,)), str(folder), *args],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_proxy_routes_with_the_shipped_classifier_without_torch(tmp_path: Path) -> None:
    result = _run(PROXY, tmp_path)
    assert result["status"] == [200, 200]
    difficulty = result["difficulty"]
    assert isinstance(difficulty, list) and difficulty[0] is not None and difficulty[0] == difficulty[1]
    assert result["cache"] == [1, 1]  # the repeated prompt was scored once
    assert result["heavy"] == []


def test_proxy_routes_with_the_two_stage_score_without_torch(tmp_path: Path) -> None:
    result = _run(PROXY, tmp_path, "classifier:\n  first_stage: {disagreement: 0.005}\n")
    assert result["status"] == [200, 200]
    assert result["cache"] == [1, 1]
    assert result["stages"] in ([1, 0], [0, 1])  # one prompt, scored once, by one of the stages
    assert result["stage_metric"] == 1.0  # and /metrics says so
    assert result["heavy"] == []


def test_classifier_score_cli_without_torch(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "What is 2 + 2?"}, {"id": "b", "prompt": "Prove the Riemann hypothesis."}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = _run(SCORE, tmp_path)
    assert result["exit"] == 0, result["output"]
    scored = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["id"] for row in scored] == ["a", "b"] and all(0 <= row["difficulty"] <= 1 for row in scored)
    assert result["heavy"] == []
