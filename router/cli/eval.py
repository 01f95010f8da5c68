"""`router eval`: classifier -> policy -> backend -> strategy on questions with reference answers."""

from __future__ import annotations

import asyncio
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from router.cli._common import configure_logging, reports_errors
from router.cli._progress import Progress, duration

if TYPE_CHECKING:
    from policies import Policy
    from router.evals import EvalQuestion, EvalRow
    from router.ledger import LedgerConfig
    from strategies import AnswerType


class AnswerTypeChoice(str, Enum):
    """How answers are extracted and compared (auto = detect from the references)."""

    auto = "auto"
    number = "number"
    choice = "choice"
    text = "text"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}"


@reports_errors
def eval_command(
    dataset: Annotated[Path, typer.Option("--dataset", help="JSONL of {question|prompt, answer[, id]} (GSM8K '#### N' ok).")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Policy file.", envvar="ROUTER_CONFIG")] = Path("router.yaml"),
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256, help="Questions in flight at once.")] = 1,
    force_tier: Annotated[
        str | None, typer.Option("--force-tier", help="Send every question to this tier (no classifier, no baselines).")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", help="Result JSONL; an existing file is resumed, finished questions skipped.")
    ] = Path("eval-results.jsonl"),
    answer_type: Annotated[AnswerTypeChoice, typer.Option("--answer-type", help="How answers are graded.")] = AnswerTypeChoice.auto,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Also force the questions through each tier alone.")
    ] = True,
    ledger_url: Annotated[
        str | None,
        typer.Option(
            "--ledger", metavar="REDIS_URL",
            help="Also record each graded answer (prompt included) in the Redis ledger at this URL, for "
            "`router report` and `router ledger export`.",
        ),
    ] = None,
    ledger_prefix: Annotated[str, typer.Option("--ledger-prefix", help="Key prefix of that ledger.")] = "router:",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    """Answer and grade every question; print accuracy, cost and cost per correct answer per run and tier."""
    from policies import load_policy
    from router.evals import detect_answer_type, load_questions
    from router.evals.runner import POLICY_RUN, tier_run

    configure_logging(verbose)
    policy = load_policy(config)
    questions = load_questions(dataset, limit)
    kind = detect_answer_type(questions) if answer_type is AnswerTypeChoice.auto else answer_type.value
    if force_tier is not None:
        policy.forced(force_tier, "")  # fails early, naming the tiers, when the name is wrong
        runs = [tier_run(force_tier)]
    else:
        runs = [POLICY_RUN] + ([tier_run(t) for t in policy.tier_names] if baselines else [])
    difficulties: dict[str, float] = {}
    if POLICY_RUN in runs:
        from classifiers.loading import load_policy_classifier

        classifier = load_policy_classifier(policy)
        scores = classifier.predict_score([q.question for q in questions], policy.config.classifier.score)
        difficulties = {q.id: float(s) for q, s in zip(questions, scores, strict=True)}
    typer.echo(f"{len(questions)} questions, answer type {kind}, runs: {', '.join(runs)}", err=True)
    typer.echo(_estimate(policy, questions, runs, difficulties, output), err=True)
    ledger_config = None
    if ledger_url is not None:
        from router.ledger import LedgerConfig

        ledger_config = LedgerConfig(redis_url=ledger_url, key_prefix=ledger_prefix, store_prompts=True)
    rows = asyncio.run(
        _run(policy, questions, runs, difficulties, kind, output, concurrency, ledger_config, dataset.stem)
    )
    _print_summary(rows, output)


async def _run(
    policy: Policy, questions: list[EvalQuestion], runs: list[str], difficulties: dict[str, float],
    kind: AnswerType, output: Path, concurrency: int, ledger_config: LedgerConfig | None, source: str,
) -> list[EvalRow]:
    from router.evals import run_eval
    from router.execution import DefaultBackends, Executor
    from router.ledger import open_ledger

    ledger = open_ledger(ledger_config) if ledger_config is not None else None
    if ledger is not None:
        await ledger.start()
    backends = DefaultBackends()
    await asyncio.to_thread(backends.preload, policy)  # local models load once, here
    total = len(questions) * len(runs)
    try:
        with Progress(total, "eval", "answers") as progress:
            return await run_eval(
                policy, Executor(backends), questions, runs, difficulties, kind, output,
                concurrency=concurrency, on_row=lambda row: progress.update(1), ledger=ledger, source=source,
            )
    finally:
        await backends.aclose()
        if ledger is not None:
            await ledger.aclose()


def _estimate(
    policy: Policy, questions: list[EvalQuestion], runs: list[str], difficulties: dict[str, float], output: Path,
) -> str:
    """What the runs will take, before they start: answers, and machine time on tiers priced by the hour.

    A local tier's price is its machine's hourly price over its generation speed (router.yaml's
    tokens_per_second), so its expected cost converts back to seconds; the worst case is every
    sample and escalation writing max_tokens. Hosted tiers show their expected cost instead.
    """
    from router.evals.runner import POLICY_RUN

    expected_s = worst_s = cost = 0.0
    hosted = 0
    for run in runs:
        for question in questions:
            if run == POLICY_RUN:
                decision = policy.decide(question.question, difficulties.get(question.id, 0.5))
            else:
                decision = policy.forced(run.removeprefix("tier:"), question.question)
            price = policy.price(decision.tier)
            cost += decision.expected_cost_usd
            if price.gpu_hour_usd:
                per_second = price.gpu_hour_usd / 3600
                expected_s += decision.expected_cost_usd / per_second
                worst_s += policy.worst_case_cost(decision) / per_second
            else:
                hosted += 1
    answers = len(questions) * len(runs)
    resumed = f" ({output} exists: finished questions are skipped)" if output.exists() else ""
    parts = [f"estimate: {answers} answers{resumed}, expected cost ${cost:.4f}"]
    if worst_s:
        parts.append(
            f"local tiers about {duration(expected_s)} of generation at router.yaml's tokens_per_second, "
            f"up to {duration(worst_s)} if every sample writes max_tokens (--limit N, --no-baselines or "
            "--force-tier cut it)"
        )
    if hosted:
        parts.append(f"{hosted} answers on hosted tiers (time depends on the provider)")
    return "; ".join(parts)


def _print_summary(rows: list[EvalRow], output: Path) -> None:
    from router.evals import summarise

    runs, tiers = summarise(rows)
    table = Table(title=f"results in {output}", box=box.SIMPLE_HEAD)
    for column in ("run", "questions", "accuracy", "total cost", "cost per correct", "tokens in", "tokens out"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for summary in runs + tiers:
        c = summary.counts
        table.add_row(
            summary.name, str(c.requests), "-" if c.accuracy is None else f"{c.accuracy:.3f}", _money(c.cost_usd),
            _money(c.cost_per_correct), str(c.input_tokens), str(c.output_tokens),
        )
    Console(width=110).print(table)
