"""Run questions through the pipeline, append one graded row per question, resume where it stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from policies import Policy
from core.errors import BackendError, DataError
from router.evals.dataset import EvalQuestion
from router.execution import ExecutionResult, Executor, RequestOptions
from router.ledger import Ledger, LedgerEntry
from strategies import AnswerType, extract_answer, grade

logger = logging.getLogger(__name__)

POLICY_RUN = "policy"
# Verdicts graded against a dataset's reference answers: their own source in the ledger, never mixed
# with the app's feedback (router.ledger.entry.VERDICT_SOURCES).
REFERENCE_SOURCE = "reference"


def tier_run(tier: str) -> str:
    """The run name of the baseline that forces every question through `tier`."""
    return f"tier:{tier}"


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One graded question in one run, as written to the output JSONL."""

    run: str
    id: str
    tier: str
    strategy: str
    rule: str
    difficulty: float | None
    answer: str | None
    reference: str
    correct: bool
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    models: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(asdict(self))


def read_done(path: Path) -> tuple[list[EvalRow], set[tuple[str, str]]]:
    """Rows already in `path` (errors excluded, so they are retried) and their (run, id) keys."""
    if not path.exists():
        return [], set()
    rows: list[EvalRow] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(EvalRow(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as error:
            if number == len(lines):  # a line cut short by an interrupted run: redo that question
                logger.warning("%s line %d is incomplete; that question will run again", path, number)
                continue
            raise DataError(
                f"{path} line {number} is not an eval result row ({error}); pass another --output or remove it."
            ) from None
    kept = [row for row in rows if row.error is None]
    return kept, {(row.run, row.id) for row in kept}


async def run_eval(
    policy: Policy,
    executor: Executor,
    questions: Sequence[EvalQuestion],
    runs: Sequence[str],
    difficulties: dict[str, float],
    answer_type: AnswerType,
    output: Path,
    *,
    concurrency: int = 1,
    on_row: Callable[[EvalRow], None] | None = None,
    ledger: Ledger | None = None,
    source: str = "eval",
) -> list[EvalRow]:
    """Run every (run, question) pair not yet in `output`; append each graded row as soon as it is done.

    With a `ledger`, each question is also recorded there (prompt included, `source` as its app) and,
    when answered, graded at once, so `router report` and `router ledger export` see eval traffic. A
    failed question is recorded too (status "error"), with the calls it paid for before failing;
    its row carries the same spend, and it runs again on resume.
    """
    previous, done = read_done(output)
    if done:
        logger.info("resuming: %d rows already in %s", len(done), output)
    pending = [(run, q) for run in runs for q in questions if (run, q.id) not in done]
    semaphore = asyncio.Semaphore(concurrency)
    rows: list[EvalRow] = [row for row in previous if row.run in runs]
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a", encoding="utf-8") as handle:

        async def one(run: str, question: EvalQuestion) -> None:
            async with semaphore:
                row, entry = await _answer(policy, executor, run, question, difficulties, answer_type, source)
            handle.write(row.to_json() + "\n")
            handle.flush()  # an interrupted run keeps every finished row
            if row.error is None:
                rows.append(row)
            if ledger is not None:  # failures too: the calls paid before them cost money
                await ledger.record(entry)
                if row.error is None:
                    await ledger.feedback(entry.request_id, 1.0 if row.correct else 0.0, source=REFERENCE_SOURCE)
            if on_row is not None:
                on_row(row)

        await asyncio.gather(*(one(run, q) for run, q in pending))
    return rows


async def _answer(
    policy: Policy,
    executor: Executor,
    run: str,
    question: EvalQuestion,
    difficulties: dict[str, float],
    answer_type: AnswerType,
    source: str,
) -> tuple[EvalRow, LedgerEntry]:
    """Run one question; its graded row, and its ledger entry (what it cost, answered or failed)."""
    difficulty = difficulties.get(question.id)
    score = difficulty if difficulty is not None else math.nan
    if run == POLICY_RUN:
        decision = policy.decide(question.question, score)
    else:  # the classifier's score is still recorded, so forced runs show how well it predicted them
        decision = dataclasses.replace(policy.forced(run.removeprefix("tier:"), question.question), difficulty=score)
    messages: list[Any] = [{"role": "user", "content": question.question}]
    start = time.perf_counter()
    outcome: ExecutionResult | BackendError
    try:
        outcome = await executor.run(policy, decision, messages, RequestOptions())
    except BackendError as failure:
        outcome = failure
    entry = LedgerEntry.from_execution(
        f"eval-{uuid.uuid4().hex[:20]}", decision, outcome,
        status="error" if isinstance(outcome, BackendError) else "ok", latency_s=time.perf_counter() - start,
        key_tag="eval", app=source, prompt=question.question, source=source,
        extra={"eval_run": run, "question_id": question.id},
    )
    if isinstance(outcome, BackendError):
        answer, correct, error = None, False, str(outcome)
    else:
        answer = extract_answer(outcome.text, answer_type)
        correct, error = grade(answer, question.reference, answer_type), None
    row = EvalRow(
        run=run,
        id=question.id,
        tier=entry.tier,
        strategy=entry.strategy,
        rule=entry.rule,
        difficulty=difficulty,
        answer=answer,
        reference=question.reference,
        correct=correct,
        input_tokens=entry.input_tokens,
        output_tokens=entry.output_tokens,
        cost_usd=entry.cost_usd,
        latency_s=entry.latency_s,
        models=list(entry.models),
        error=error,
    )
    return row, entry
