"""Run questions through the pipeline, append one graded row per question, resume where it stopped."""

from __future__ import annotations

import asyncio
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
from router.execution import Executor, RequestOptions
from router.ledger import Ledger, LedgerEntry
from strategies import AnswerType, extract_answer, grade

logger = logging.getLogger(__name__)

POLICY_RUN = "policy"


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

    With a `ledger`, each answered question is also recorded there (prompt included, `source` as its
    app) and graded at once, so `router report` and `router ledger export` see eval traffic.
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
                row = await _answer(policy, executor, run, question, difficulties, answer_type)
            handle.write(row.to_json() + "\n")
            handle.flush()  # an interrupted run keeps every finished row
            if row.error is None:
                rows.append(row)
                if ledger is not None:
                    await _record(ledger, policy, row, question, source)
            if on_row is not None:
                on_row(row)

        await asyncio.gather(*(one(run, q) for run, q in pending))
    return rows


async def _record(ledger: Ledger, policy: Policy, row: EvalRow, question: EvalQuestion, source: str) -> None:
    """Write the row as a ledger record and grade it (correct = 1, wrong = 0)."""
    request_id = f"eval-{uuid.uuid4().hex[:20]}"
    entry = LedgerEntry(
        request_id=request_id,
        timestamp=time.time(),
        policy_version=policy.version,
        tier=row.tier,
        strategy=row.strategy,
        rule=row.rule,
        difficulty=row.difficulty,
        models=tuple(row.models),
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost_usd=row.cost_usd,
        latency_s=row.latency_s,
        status="ok",
        key_tag="eval",
        app=source,
        prompt=question.question,
        source=source,
        extra={"eval_run": row.run, "question_id": row.id},
    )
    await ledger.record(entry)
    await ledger.feedback(request_id, 1.0 if row.correct else 0.0)


async def _answer(
    policy: Policy,
    executor: Executor,
    run: str,
    question: EvalQuestion,
    difficulties: dict[str, float],
    answer_type: AnswerType,
) -> EvalRow:
    difficulty = difficulties.get(question.id)
    if run == POLICY_RUN:
        decision = policy.decide(question.question, difficulty if difficulty is not None else math.nan)
    else:
        decision = policy.forced(run.removeprefix("tier:"), question.question)
    messages: list[Any] = [{"role": "user", "content": question.question}]
    start = time.perf_counter()
    try:
        result = await executor.run(policy, decision, messages, RequestOptions())
    except BackendError as error:
        return EvalRow(
            run, question.id, decision.tier, decision.strategy.type, decision.rule, difficulty, None,
            question.reference, False, 0, 0, 0.0, time.perf_counter() - start, error=str(error),
        )
    answer = extract_answer(result.text, answer_type)
    return EvalRow(
        run=run,
        id=question.id,
        tier=result.tier,
        strategy=result.strategy,
        rule=decision.rule,
        difficulty=difficulty,
        answer=answer,
        reference=question.reference,
        correct=grade(answer, question.reference, answer_type),
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_usd=result.cost_usd,
        latency_s=time.perf_counter() - start,
        models=list(result.models),
    )
