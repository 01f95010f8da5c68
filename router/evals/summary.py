"""Accuracy, cost and cost per correct answer of an eval, per run and per tier."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.metrics import accuracy, cost_per_correct
from router.evals.runner import EvalRow


@dataclass(frozen=True)
class RunSummary:
    """Totals over a group of graded rows."""

    name: str
    questions: int
    correct: int
    cost_usd: float
    input_tokens: int
    output_tokens: int
    latency_s: float

    @property
    def accuracy(self) -> float | None:
        """Share answered correctly (None with no questions)."""
        return accuracy(self.correct, self.questions)

    @property
    def cost_per_correct(self) -> float | None:
        """Total cost divided by correct answers; None when none is correct (see core.metrics)."""
        return cost_per_correct(self.cost_usd, self.correct)


def _total(name: str, rows: list[EvalRow]) -> RunSummary:
    return RunSummary(
        name=name,
        questions=len(rows),
        correct=sum(row.correct for row in rows),
        cost_usd=sum(row.cost_usd for row in rows),
        input_tokens=sum(row.input_tokens for row in rows),
        output_tokens=sum(row.output_tokens for row in rows),
        latency_s=sum(row.latency_s for row in rows),
    )


def summarise(rows: Iterable[EvalRow]) -> tuple[list[RunSummary], list[RunSummary]]:
    """Per-run totals, and per-tier totals within the policy run (the tiers it chose)."""
    by_run: dict[str, list[EvalRow]] = {}
    for row in rows:
        by_run.setdefault(row.run, []).append(row)
    runs = [_total(name, group) for name, group in by_run.items()]
    by_tier: dict[str, list[EvalRow]] = {}
    for row in by_run.get("policy", []):
        by_tier.setdefault(row.tier, []).append(row)
    return runs, [_total(f"policy -> {tier}", group) for tier, group in sorted(by_tier.items())]
