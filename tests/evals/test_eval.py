"""`router eval`: grading, accounting, resume and the CLI against a real upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from policies import Policy, parse_policy
from router.backends import Backend, FakeBackend, TokenPrice
from router.cli import app
from core.errors import BackendUnavailable, DataError
from router.evals import EvalQuestion, EvalRow, detect_answer_type, load_questions, run_eval, summarise
from router.evals.runner import POLICY_RUN, tier_run
from router.execution import Executor
from router.ledger import LedgerConfig, open_ledger, open_sync_ledger
from tests.backends.conftest import openai_stub  # noqa: F401 - the real upstream fixture
from tests.backends.upstream_stub import OpenAIStub, Reply
from tests.conftest import TEST_REDIS_URL
from tests.execution.test_partial_spend import POLICY as PARTIAL_SPEND_POLICY
from tests.execution.test_partial_spend import FailsOnSecondCall
from tests.ledger.support import delete_prefix
from tests.server.support import FAKE_POLICY, FakeBackends


def _policy_text(upstream: str = "http://127.0.0.1:9/v1") -> str:
    """The server tests' two-tier policy: fast (direct) and deep (self-consistency, n=3)."""
    return FAKE_POLICY.format(upstream=upstream, timeout=10)


QUESTIONS = [
    {"id": "q1", "question": "What is 2 + 3?", "answer": "5"},
    {"id": "q2", "question": "What is 10 + 7?", "answer": "#### 17"},
    {"id": "q3", "question": "What is 9 + 9?", "answer": "18"},
]


def _sum_of(messages: Sequence[Mapping[str, str]]) -> int:
    a, b = map(int, re.findall(r"\d+", messages[-1]["content"])[:2])
    return a + b


def _fast_wrong_deep_right() -> dict[str, Backend]:
    """fast always answers 5 (right only for q1); deep answers the sum (always right)."""
    return {
        "fast": FakeBackend(["The answer is 5"], model="fake-fast", price=TokenPrice(1.0, 2.0)),
        "deep": FakeBackend(
            lambda messages, params, i: f"Answer: {_sum_of(messages)}", model="fake-deep", price=TokenPrice(10.0, 20.0)
        ),
    }


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def _run(policy: Policy, tiers: Mapping[str, Backend], dataset: Path, output: Path, runs: list[str]):  # type: ignore[no-untyped-def]
    questions = load_questions(dataset)
    difficulties = {"q1": 0.1, "q2": 0.9, "q3": 0.2}
    return asyncio.run(
        run_eval(policy, Executor(FakeBackends(tiers)), questions, runs, difficulties, "number", output, concurrency=2)
    )


def test_grades_and_accounts_each_run(dataset: Path, tmp_path: Path) -> None:
    policy = parse_policy(_policy_text())
    output = tmp_path / "out.jsonl"
    rows = _run(policy, _fast_wrong_deep_right(), dataset, output, [POLICY_RUN, tier_run("fast"), tier_run("deep")])
    by_key = {(r.run, r.id): r for r in rows}
    assert by_key[(POLICY_RUN, "q1")].tier == "fast" and by_key[(POLICY_RUN, "q1")].correct
    assert by_key[(POLICY_RUN, "q2")].tier == "deep" and by_key[(POLICY_RUN, "q2")].correct
    assert by_key[(POLICY_RUN, "q3")].tier == "fast" and not by_key[(POLICY_RUN, "q3")].correct
    assert by_key[(tier_run("deep"), "q3")].rule == "forced" and by_key[(tier_run("deep"), "q3")].answer == "18"
    runs, tiers = summarise(rows)
    totals = {s.name: s.counts for s in runs}
    assert totals["policy"].correct == 2 and totals["tier:fast"].correct == 1 and totals["tier:deep"].correct == 3
    # FakeBackend counts one token per word. deep, q2: 3 samples of "Answer: 17" (2 tokens each), one prompt of 5 words.
    q2 = by_key[(POLICY_RUN, "q2")]
    assert (q2.input_tokens, q2.output_tokens) == (5, 6)
    assert q2.cost_usd == pytest.approx((5 * 10.0 + 6 * 20.0) / 1e6)
    assert totals["policy"].cost_per_correct == pytest.approx(totals["policy"].cost_usd / 2)
    assert {s.name for s in tiers} == {"policy -> fast", "policy -> deep"}
    assert len(output.read_text().splitlines()) == 9


def test_resume_skips_finished_questions_and_retries_errors(dataset: Path, tmp_path: Path) -> None:
    policy = parse_policy(_policy_text())
    output = tmp_path / "out.jsonl"
    failing = FakeBackend(["x"], failures=[BackendUnavailable("upstream down")] * 10)
    tiers = {**_fast_wrong_deep_right(), "fast": failing}
    first = _run(policy, tiers, dataset, output, [tier_run("fast")])
    assert first == []  # every question failed; the failures are written but not counted
    assert all(json.loads(line)["error"] for line in output.read_text().splitlines())
    healthy = _fast_wrong_deep_right()
    second = _run(policy, healthy, dataset, output, [tier_run("fast")])
    assert len(second) == 3
    calls_before = len(healthy["fast"].calls)  # type: ignore[attr-defined]
    third = _run(policy, healthy, dataset, output, [tier_run("fast")])
    assert len(third) == 3
    assert len(healthy["fast"].calls) == calls_before  # type: ignore[attr-defined]


def test_a_line_cut_short_is_redone(dataset: Path, tmp_path: Path) -> None:
    policy = parse_policy(_policy_text())
    output = tmp_path / "out.jsonl"
    _run(policy, _fast_wrong_deep_right(), dataset, output, [tier_run("fast")])
    lines = output.read_text().splitlines()
    output.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    rows = _run(policy, _fast_wrong_deep_right(), dataset, output, [tier_run("fast")])
    assert sorted(r.id for r in rows) == ["q1", "q2", "q3"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "hi"}', "line 2: answer"),
        ('{"answer": "3"}', "line 2: question"),
        ("not json", "line 2: not valid JSON"),
        ('{"id": "q1", "question": "x", "answer": "1"}', "appears twice"),
    ],
)
def test_bad_dataset_rows_name_the_line(line: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(QUESTIONS[0]) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_questions(path)


def test_answer_type_detection(tmp_path: Path) -> None:
    def qs(*answers: str) -> list:  # type: ignore[type-arg]
        path = tmp_path / "d.jsonl"
        path.write_text("".join(json.dumps({"question": f"q{i}", "answer": a}) + "\n" for i, a in enumerate(answers)))
        return load_questions(path)

    assert detect_answer_type(qs("5", "Work... #### 1,234")) == "number"
    assert detect_answer_type(qs("B", "(c)")) == "choice"
    assert detect_answer_type(qs("Paris", "5")) == "text"


@pytest.fixture
def stub_policy(openai_stub: OpenAIStub, tmp_path: Path) -> Iterator[Path]:  # noqa: F811
    path = tmp_path / "router.yaml"
    path.write_text(_policy_text(openai_stub.url))
    yield path


def test_cli_force_tier_against_a_real_upstream(
    openai_stub: OpenAIStub, stub_policy: Path, dataset: Path, tmp_path: Path  # noqa: F811
) -> None:
    openai_stub.reset(*[Reply(texts=("The answer is 5",))] * 3)
    output = tmp_path / "results.jsonl"
    result = CliRunner().invoke(
        app, ["eval", "--dataset", str(dataset), "--config", str(stub_policy), "--force-tier", "fast",
              "--output", str(output)],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["correct"] for r in sorted(rows, key=lambda r: r["id"])] == [True, False, False]
    assert all(r["input_tokens"] == 10 and r["output_tokens"] == 3 for r in rows)
    assert "tier:fast" in result.stdout and "cost per correct" in result.stdout


def test_cli_unknown_tier_is_a_clear_error(stub_policy: Path, dataset: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--dataset", str(dataset), "--config", str(stub_policy),
                                      "--force-tier", "nope"])
    assert result.exit_code == 2
    assert "No tier named 'nope'; the tiers are: fast, deep" in result.output


def test_help() -> None:
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0 and "--force-tier" in result.output


@pytest.fixture
def ledger_config() -> Iterator[LedgerConfig]:
    """A ledger in the tests' Redis under a prefix of its own, deleted afterwards."""
    config = LedgerConfig(redis_url=TEST_REDIS_URL, key_prefix=f"test-eval-{uuid.uuid4().hex[:8]}:", store_prompts=True)
    yield config
    plain = redis.Redis.from_url(TEST_REDIS_URL)
    delete_prefix(plain, config.key_prefix)
    plain.close()


def _run_into_ledger(
    config: LedgerConfig, policy: Policy, tiers: Mapping[str, Backend], questions: Sequence[EvalQuestion],
    runs: list[str], difficulties: dict[str, float], output: Path,
) -> list[EvalRow]:
    """run_eval with a ledger opened on `config`, answering as source "questions"."""

    async def go() -> list[EvalRow]:
        ledger = open_ledger(config)
        await ledger.start()
        try:
            return await run_eval(
                policy, Executor(FakeBackends(tiers)), questions, runs, difficulties, "number", output, ledger=ledger,
                source="questions",
            )
        finally:
            await ledger.aclose()

    return asyncio.run(go())


def test_graded_answers_go_to_the_ledger_and_export_back(
    dataset: Path, tmp_path: Path, ledger_config: LedgerConfig
) -> None:
    rows = _run_into_ledger(
        ledger_config, parse_policy(_policy_text()), _fast_wrong_deep_right(), load_questions(dataset),
        [tier_run("fast"), tier_run("deep")], {}, tmp_path / "out.jsonl",
    )
    with closing(open_sync_ledger(ledger_config)) as reader:
        stored = reader.records()
    assert len(stored) == len(rows) == 6
    assert {s.entry.rule for s in stored} == {"forced"}
    assert sorted(s.score for s in stored) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    # Graded against the dataset's answers: source `reference`, never the app's `feedback`.
    assert all(set(s.verdicts) == {"reference"} and s.verdicts["reference"] == s.score for s in stored)
    assert all(s.entry.prompt and s.entry.app == "questions" for s in stored)
    exported = tmp_path / "export.jsonl"
    result = CliRunner().invoke(
        app, ["ledger", "export", "--format", "jsonl", "--redis-url", TEST_REDIS_URL, "--prefix",
              ledger_config.key_prefix, "--output", str(exported)],
    )
    assert result.exit_code == 0, result.output
    outcomes = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(outcomes) == 3 and all(set(o["outcomes"]) == {"fast", "deep"} for o in outcomes)


def test_app_feedback_outranks_an_eval_reference_in_the_aggregates(
    dataset: Path, tmp_path: Path, ledger_config: LedgerConfig
) -> None:
    """An app's own verdict on an eval-recorded request replaces the reference in the aggregates;
    a later reference never takes it back; both stay readable by source."""
    rows = _run_into_ledger(
        ledger_config, parse_policy(_policy_text()), _fast_wrong_deep_right(), load_questions(dataset)[:1],
        [tier_run("deep")], {}, tmp_path / "out.jsonl",
    )
    with closing(open_sync_ledger(ledger_config)) as reader:
        (stored,) = reader.records()
        assert rows[0].correct and stored.verdicts == {"reference": 1.0}
        request_id = stored.entry.request_id
        assert reader.feedback(request_id, 0.0, source="feedback") is True
        assert reader.feedback(request_id, 1.0, source="reference") is True  # kept beside, not counted
        (stored,) = reader.records()
        total = reader.aggregates(None)[""]
    assert stored.score == 0.0 and stored.verdicts == {"feedback": 0.0, "reference": 1.0}
    assert (total.graded, total.correct) == (1, 0.0)


def test_a_failed_question_accounts_the_calls_it_paid_for(
    dataset: Path, tmp_path: Path, ledger_config: LedgerConfig
) -> None:
    policy = parse_policy(PARTIAL_SPEND_POLICY.replace("fallbacks:\n  deep: [fast]\n", ""))  # deep has no fallback
    output = tmp_path / "out.jsonl"
    rows = _run_into_ledger(
        ledger_config, policy, {"deep": FailsOnSecondCall()}, load_questions(dataset)[:1], [tier_run("deep")],
        {"q1": 0.3}, output,
    )
    assert rows == []  # nothing answered, so nothing graded or summarised
    # FakeBackend counts words: the 5-word prompt once, then 2 answers of 2 words, before deep went away.
    paid = (5 * 10.0 + 4 * 20.0) / 1e6
    (row,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert "mid-vote" in row["error"] and (row["input_tokens"], row["output_tokens"], row["models"]) == (5, 4, ["deep"])
    assert row["cost_usd"] == pytest.approx(paid)
    with closing(open_sync_ledger(ledger_config)) as reader:
        (stored,) = reader.records()
        total = reader.aggregates(None)[""]
    assert (stored.entry.status, stored.score, stored.entry.difficulty) == ("error", None, 0.3)
    assert stored.entry.cost_usd == pytest.approx(paid)
    assert (total.requests, total.errors, total.graded) == (1, 1, 0)
    assert total.cost_usd == pytest.approx(paid)
