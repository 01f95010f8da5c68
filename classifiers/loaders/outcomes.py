"""Reader for our routing-outcome JSON Lines format (docs/data-format.md, first section)."""

from __future__ import annotations

import difflib

from classifiers.loaders._rows import RowProblem, RowSink, Source, iter_jsonl, json_type
from classifiers.loaders._values import (
    json_score,
    optional_amount,
    optional_count,
    optional_text,
    prompt,
)
from classifiers.records import OutcomeRecord, TierOutcome, record_id

OUTCOME_KEYS = ("correct", "model", "input_tokens", "output_tokens", "cost_usd", "latency_s")


def read(src: Source, sink: RowSink) -> None:
    """Parse every row; each must list the same tiers, in the same order, as the first good row."""
    expected: tuple[str, ...] | None = None
    expected_line = 0
    for line, row in iter_jsonl(src, sink):
        try:
            record = parse_row(row, src.stem)
            tiers = tuple(record.outcomes)
            if expected is not None and tiers != expected:
                raise RowProblem(
                    "outcomes",
                    f"has tiers [{', '.join(tiers)}] but line {expected_line} has "
                    f"[{', '.join(expected)}]",
                    "Every row of a file must list the same tiers in the same order, "
                    "cheapest first.",
                )
        except RowProblem as problem:
            sink.reject(line, problem)
            continue
        if expected is None:
            expected, expected_line = tiers, line
        sink.accept(line, record)


def parse_row(row: dict[str, object], default_source: str) -> OutcomeRecord:
    """One outcomes row as a record; extra top-level keys (such as "metadata") are ignored."""
    text = prompt(row.get("prompt"))
    source = optional_text(row.get("source"), "source") or default_source
    rid = optional_text(row.get("id"), "id") or record_id(source, text)
    outcomes = row.get("outcomes")
    example = 'Add "outcomes": {"<tier>": {"correct": true}, ...}, cheapest tier first.'
    if outcomes is None:
        raise RowProblem("outcomes", "missing", example)
    if not isinstance(outcomes, dict):
        raise RowProblem(
            "outcomes", f"must be an object of tiers, got {json_type(outcomes)}", example
        )
    if not outcomes:
        raise RowProblem("outcomes", "has no tiers", example)
    return OutcomeRecord(
        id=rid,
        source=source,
        prompt=text,
        outcomes={tier: _tier(tier, value) for tier, value in outcomes.items()},
    )


def _tier(tier: str, value: object) -> TierOutcome:
    where = f"outcomes.{tier}"
    if not tier.strip():
        raise RowProblem("outcomes", "has a tier with an empty name", "Name every tier.")
    if not isinstance(value, dict):
        raise RowProblem(
            where,
            f"must be an object, got {json_type(value)}",
            'Write {"correct": true} or similar.',
        )
    for key in value:
        if key not in OUTCOME_KEYS:
            close = difflib.get_close_matches(key, OUTCOME_KEYS, n=1)
            fix = f'Did you mean "{close[0]}"? ' if close else ""
            fix += f"The keys of a tier are {', '.join(OUTCOME_KEYS)}."
            raise RowProblem(f"{where}.{key}", "unknown key", fix)
    if "correct" not in value:
        raise RowProblem(
            f"{where}.correct",
            "missing",
            'Every tier needs "correct": true/false or a score in [0, 1].',
        )
    return TierOutcome(
        correct=json_score(value["correct"], f"{where}.correct"),
        model=optional_text(value.get("model"), f"{where}.model"),
        input_tokens=optional_count(value.get("input_tokens"), f"{where}.input_tokens"),
        output_tokens=optional_count(value.get("output_tokens"), f"{where}.output_tokens"),
        cost_usd=optional_amount(value.get("cost_usd"), f"{where}.cost_usd"),
        latency_s=optional_amount(value.get("latency_s"), f"{where}.latency_s"),
    )
