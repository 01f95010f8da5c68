"""Accuracy, cost and cost per correct answer of an eval, per run and per tier."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from router.evals.runner import EvalRow
from router.ledger.counts import Counts


@dataclass(frozen=True)
class RunSummary:
    """Totals over a group of graded rows, counted as the ledger counts requests (each row is graded)."""

    name: str
    counts: Counts


def _total(name: str, rows: list[EvalRow]) -> RunSummary:
    total = Counts()
    for row in rows:
        total.add(Counts.one(row.cost_usd, row.input_tokens, row.output_tokens, row.latency_s, score=float(row.correct)))
    return RunSummary(name, total)


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
