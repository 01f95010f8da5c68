"""Shadowing a candidate policy: the proxy's sampling, the worker's paired rows, the report and the CLI.

Real Redis, the replay upstream over HTTP, the worker in this process (tests/live/test_processes.py
runs `router serve`, `router worker` and `router policy shadow` as processes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from bench.live.setup import write_replay_policy
from core.llm import Message
from policies import load_policy
from router.cli import app as cli
from router.ledger import LedgerConfig, open_sync_ledger
from router.live.jobs import JobKind
from router.live.loop import LiveLoop
from router.live.shadow import ShadowStore
from router.live.shadow_report import compare
from tests.conftest import TEST_REDIS_URL
from tests.live.test_worker import answered, entry_for, run_worker

SHADOW_SECTION = "shadow:\n  candidate: candidate.yaml\n  sample: 1.0\n"


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def live_and_candidate(tmp_path: Path, url: str, *, section: bool = True, candidate_head: str = "") -> tuple[Path, Path]:
    """Live: weak below difficulty 0.5; candidate: weak below 0.2. Grading only through shadowing."""
    live = write_replay_policy(tmp_path / "router.yaml", url, grade=0.0, explore=0.0, threshold=0.5)
    if section:
        live.write_text(live.read_text() + SHADOW_SECTION)
    candidate = write_replay_policy(tmp_path / "candidate.yaml", url, grade=0.0, explore=0.0, threshold=0.2)
    if candidate_head:
        candidate.write_text(candidate_head + candidate.read_text())
    return live, candidate


def record_and_enqueue(
    live: Path, prefix: str, rows: Sequence[dict[str, Any]], upstream: Any, difficulties: Sequence[float],
) -> tuple[LiveLoop, list[str]]:
    """Record live requests as the live policy routed them, then offer each to the live loop."""
    policy = load_policy(live)
    ledger = open_sync_ledger(LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix, store_prompts=True))
    items = []
    for i, (row, difficulty) in enumerate(zip(rows, difficulties, strict=True)):
        tier = policy.route(difficulty, 10)
        entry = dataclasses.replace(
            entry_for(row, tier, f"sh{i}"), difficulty=difficulty, policy_version=policy.version,
            cost_usd=1e-5 if tier == "weak" else 2e-4,
        )
        ledger.record(entry)
        items.append((entry, answered(upstream, row, tier)))
    ledger.close()

    async def go() -> LiveLoop:
        client = Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        loop = LiveLoop(lambda: policy, client, prefix)
        await loop.refresh_shadow()
        for entry, answer in items:
            await loop.after_request(entry, [Message(role="user", content=str(entry.prompt))], answer)
        await loop.aclose()
        await client.aclose()
        return loop

    return asyncio.run(go()), [entry.request_id for entry, _ in items]


async def _rows(prefix: str, version: str) -> list[Any]:
    client = Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    try:
        return await ShadowStore(client, prefix).rows(version)
    finally:
        await client.aclose()


def test_shadow_section_pairs_live_and_candidate_answers(
    rows: list[dict[str, Any]], upstream: Any, tmp_path: Path, prefix: str
) -> None:
    app, url = upstream
    live, candidate = live_and_candidate(tmp_path, url)
    # 0.1: weak for both (same plan); 0.3: weak live, strong candidate; 0.8: strong for both.
    difficulties = [0.1, 0.3, 0.8] * 4
    loop, ids = record_and_enqueue(live, prefix, rows[:12], app, difficulties)
    assert loop.stats()["queued_shadow"] == 12
    version = load_policy(candidate).version
    assert loop.shadowing is not None and loop.shadowing.version == version
    strong_calls = app.calls.get("strong", 0)

    worker = asyncio.run(run_worker(live, prefix, 12))
    assert worker.totals["shadow_rows"] == 12, dict(worker.totals)
    # The candidate answered only where it chose another plan: the four 0.3 requests.
    assert app.calls.get("strong", 0) - strong_calls == 4
    shadow_rows = {r.request_id: r for r in asyncio.run(_rows(prefix, version))}
    for i, (row, difficulty) in enumerate(zip(rows[:12], difficulties, strict=True)):
        got = shadow_rows[f"sh{i}"]
        live_tier = "weak" if difficulty < 0.5 else "strong"
        cand_tier = "weak" if difficulty < 0.2 else "strong"
        assert (got.live_tier, got.candidate_tier, got.same_plan) == (live_tier, cand_tier, live_tier == cand_tier)
        assert got.live_correct == float(row["outcomes"][live_tier]["correct"])
        assert got.candidate_correct == float(row["outcomes"][cand_tier]["correct"])
        assert got.candidate_difficulty == difficulty  # same classifier: the live score is reused
    # The live answers' verdicts are in the ledger too, as the judge's, once each.
    ledger = open_sync_ledger(LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix))
    records = {r.entry.request_id: r for r in ledger.records()}
    assert all(records[i].verdicts == {"judge": shadow_rows[i].live_correct} for i in ids)
    ledger.close()

    report = compare(version, list(shadow_rows.values()))
    live_ok = sum(r.live_correct or 0 for r in shadow_rows.values())
    cand_ok = sum(r.candidate_correct or 0 for r in shadow_rows.values())
    assert (report.graded, report.different) == (12, 4)
    assert report.live.accuracy is not None and report.live.accuracy.value == pytest.approx(live_ok / 12)
    assert report.candidate.accuracy is not None and report.candidate.accuracy.value == pytest.approx(cand_ok / 12)
    assert report.candidate.tiers == {"strong": 8, "weak": 4} and report.live.tiers == {"strong": 4, "weak": 8}
    cand_cost = sum(r.candidate_cost_usd for r in shadow_rows.values())
    assert report.candidate.cost_per_correct is not None
    assert report.candidate.cost_per_correct.value == pytest.approx(cand_cost / cand_ok)
    assert report.cost_difference is not None and report.cost_difference.value > 0  # strong costs more


def test_a_job_handled_twice_writes_one_row_and_one_verdict(
    rows: list[dict[str, Any]], upstream: Any, tmp_path: Path, prefix: str
) -> None:
    app, url = upstream
    live, candidate = live_and_candidate(tmp_path, url)
    record_and_enqueue(live, prefix, rows[:2], app, [0.3, 0.3])
    record_and_enqueue(live, prefix, rows[:2], app, [0.3, 0.3])  # the same requests queued again
    worker = asyncio.run(run_worker(live, prefix, 4))
    assert worker.totals["shadow_rows"] == 2 and worker.totals["shadow_duplicate"] == 2, dict(worker.totals)
    assert len(asyncio.run(_rows(prefix, load_policy(candidate).version))) == 2
    ledger = open_sync_ledger(LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=prefix))
    assert ledger.aggregates("tier")["weak"].graded == 2
    ledger.close()


class FixedScorer:
    """A classifier of the candidate's own (the worker's Scorer protocol): every prompt scores `value`."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> Any:
        return np.full(len(texts), self.value)


def test_a_candidate_with_its_own_classifier_is_scored_by_it(
    rows: list[dict[str, Any]], upstream: Any, tmp_path: Path, prefix: str
) -> None:
    app, url = upstream
    live, candidate = live_and_candidate(tmp_path, url, candidate_head="classifier: {path: other-classifier}\n")
    record_and_enqueue(live, prefix, rows[:3], app, [0.1, 0.1, 0.1])
    loaded: list[tuple[Path | None, str | None]] = []

    def loader(path: Path | None, embedding_model: str | None) -> FixedScorer:
        loaded.append((path, embedding_model))
        return FixedScorer(0.9)

    worker = asyncio.run(run_worker(live, prefix, 3, classifier_loader=loader))
    assert worker.totals["shadow_rows"] == 3
    assert loaded == [(tmp_path / "other-classifier", None)]  # loaded once, relative to the candidate file
    got = asyncio.run(_rows(prefix, load_policy(candidate).version))
    assert all((r.candidate_difficulty, r.candidate_tier, r.same_plan) == (0.9, "strong", False) for r in got)


def test_cli_starts_reports_and_stops_a_candidate(
    rows: list[dict[str, Any]], upstream: Any, tmp_path: Path, prefix: str
) -> None:
    app, url = upstream
    live, candidate = live_and_candidate(tmp_path, url, section=False)
    runner = CliRunner()
    base = ["policy", "shadow", "--redis-url", TEST_REDIS_URL, "--prefix", prefix, "--config", str(live)]

    result = runner.invoke(cli, [*base, "--report"])
    assert result.exit_code == 2 and "Nothing has been shadowed yet" in result.output
    result = runner.invoke(cli, [*base, "--candidate", str(candidate), "--sample", "1", "--daily-budget", "2.5"])
    assert result.exit_code == 0, result.output
    version = load_policy(candidate).version
    assert f"shadowing candidate {version}" in result.output

    # The proxy's live loop finds it in Redis (no shadow: section in the live router.yaml).
    loop, _ = record_and_enqueue(live, prefix, rows[:6], app, [0.3, 0.8] * 3)
    assert loop.shadowing is not None and (loop.shadowing.version, loop.shadowing.daily_budget_usd) == (version, 2.5)
    assert loop.stats()["queued_shadow"] == 6, loop.stats()
    asyncio.run(run_worker(live, prefix, 6))

    result = runner.invoke(cli, [*base, "--report", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["version"], report["graded"], report["different_plan"]) == (version, 6, 3)
    assert report["candidate"]["tiers"] == {"strong": 6}
    low, value, high = (report["live"]["accuracy"][k] for k in ("low", "value", "high"))
    assert 0.0 <= low <= value <= high <= 1.0
    result = runner.invoke(cli, [*base, "--report"])
    assert result.exit_code == 0 and "cost / correct" in result.output and "candidate − live" in result.output

    result = runner.invoke(cli, [*base, "--stop"])
    assert result.exit_code == 0 and f"stopped shadowing candidate {version}" in result.output
    loop, _ = record_and_enqueue(live, prefix, rows[6:8], app, [0.3, 0.3])
    assert loop.shadowing is None and "queued_shadow" not in loop.stats()
    # Its rows stay readable by version.
    result = runner.invoke(cli, [*base, "--report", "--json", "--version", version])
    assert result.exit_code == 0 and json.loads(result.output)["graded"] == 6


def test_cli_refuses_a_bad_candidate_or_a_live_policy_without_judge(upstream: Any, tmp_path: Path, prefix: str) -> None:
    _, url = upstream
    live, candidate = live_and_candidate(tmp_path, url, section=False)
    runner = CliRunner()
    base = ["policy", "shadow", "--redis-url", TEST_REDIS_URL, "--prefix", prefix]
    bad = tmp_path / "bad.yaml"
    bad.write_text(candidate.read_text().replace("tier: strong", "tier: nowhere"))
    result = runner.invoke(cli, [*base, "--config", str(live), "--candidate", str(bad)])
    assert result.exit_code == 2 and "nowhere" in result.output
    no_judge = tmp_path / "nojudge.yaml"
    no_judge.write_text(live.read_text().replace("judge_tier: judge", "judge_tier: null"))
    result = runner.invoke(cli, [*base, "--config", str(no_judge), "--candidate", str(candidate)])
    assert result.exit_code == 2 and "grading.judge_tier" in result.output
    result = runner.invoke(cli, [*base, "--report", "--stop"])
    assert result.exit_code == 2 and "exactly one of" in result.output


def test_only_routed_requests_are_shadowed_and_only_with_a_judge(
    rows: list[dict[str, Any]], upstream: Any, tmp_path: Path, prefix: str
) -> None:
    _, url = upstream
    live, _ = live_and_candidate(tmp_path, url)
    no_judge = tmp_path / "nojudge.yaml"
    no_judge.write_text(live.read_text().replace("judge_tier: judge", "judge_tier: null"))

    async def draws() -> tuple[list[JobKind | None], list[JobKind | None]]:
        client = Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        try:
            out = []
            for path in (live, no_judge):
                policy = load_policy(path)
                loop = LiveLoop(lambda: policy, client, prefix)  # noqa: B023 - used at once
                assert (await loop.refresh_shadow()) is not None
                routed = entry_for(rows[0], "weak", "routed")
                out.append([loop.sample(policy, dataclasses.replace(routed, rule=rule), "A") for rule in
                            ("easy", "forced", "session_pin")])
            return out[0], out[1]
        finally:
            await client.aclose()

    with_judge, without = asyncio.run(draws())
    assert with_judge == ["shadow", None, None]
    assert without == [None, None, None]


def test_help_lists_the_three_modes() -> None:
    result = CliRunner().invoke(cli, ["policy", "shadow", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert all(option in result.output for option in ("--candidate", "--report", "--stop", "--sample", "--daily-budget"))
