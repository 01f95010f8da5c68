"""Reader for RouterBench's DataFrame convention, saved as CSV or JSON Lines.

Columns: sample_id, prompt, eval_name, then per model `<model>` (score), `<model>|model_response`
and `<model>|total_cost`. Tiers are named by model and ordered cheapest first by the mean
`<model>|total_cost` over the file's good rows; without cost columns they keep file order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping

from classifiers.loaders._rows import RowProblem, RowSink, Source, iter_csv, iter_jsonl
from classifiers.loaders._values import cell_score, optional_amount, optional_text, prompt, show
from classifiers.records import OutcomeRecord, TierOutcome, record_id
from core.errors import DataError

COST = "|total_cost"
KNOWN_COLUMNS = frozenset({"sample_id", "prompt", "eval_name", "oracle_model_to_route_to"})


def model_columns(columns: list[str], first_row: Mapping[str, object]) -> list[str]:
    """Models are the X with an `X|total_cost` column, else the numeric columns not known above."""
    costed = [name.removesuffix(COST) for name in columns if name.endswith(COST)]
    if costed:
        return costed
    return [
        name
        for name in columns
        if name not in KNOWN_COLUMNS and "|" not in name and _numeric(first_row.get(name))
    ]


def read(src: Source, sink: RowSink) -> None:
    """Parse every row, then order each record's tiers cheapest first."""
    rows: Iterator[tuple[int, Mapping[str, object]]]
    rows = iter_csv(src, sink) if src.kind == "csv" else iter_jsonl(src, sink)
    models: list[str] | None = None
    for line, row in rows:
        if models is None:
            models = _checked_models(src, list(row), row)
        try:
            record = _parse(row, models, src.stem)
        except RowProblem as problem:
            sink.reject(line, problem)
            continue
        sink.accept(line, record)
    if models:
        order = cheapest_first(models, sink.records)
        sink.records[:] = [
            dataclasses.replace(r, outcomes={m: r.outcomes[m] for m in order}) for r in sink.records
        ]


def cheapest_first(models: list[str], records: list[OutcomeRecord]) -> list[str]:
    """Models by mean cost over the records; models with no cost keep file order, after the rest."""

    def mean_cost(model: str) -> float:
        costs = [c for r in records if (c := r.outcomes[model].cost_usd) is not None]
        return sum(costs) / len(costs) if costs else math.inf

    return sorted(models, key=mean_cost)  # sorted() is stable: ties keep file order


def _checked_models(src: Source, columns: list[str], first_row: Mapping[str, object]) -> list[str]:
    models = model_columns(columns, first_row)
    missing = [m for m in models if m not in columns]
    problem = None
    if "prompt" not in columns:
        problem = "has no 'prompt' column"
    elif missing:
        problem = f"has a '{missing[0]}{COST}' column but no '{missing[0]}' score column"
    elif not models:
        problem = (
            "has no model columns (no '<model>|total_cost' columns and no numeric score columns)"
        )
    if problem:
        raise DataError(
            f"{src.name}: the file {problem}. A RouterBench file has sample_id, prompt, eval_name, "
            "and per model '<model>' (score) and '<model>|total_cost'; see docs/data-format.md."
        )
    return models


def _parse(row: Mapping[str, object], models: list[str], default_source: str) -> OutcomeRecord:
    text = prompt(row.get("prompt"))
    source = optional_text(row.get("eval_name"), "eval_name") or default_source
    rid = _sample_id(row.get("sample_id")) or record_id(source, text)
    outcomes = {
        model: TierOutcome(
            correct=cell_score(row.get(model), model),
            model=model,
            cost_usd=optional_amount(row.get(model + COST), model + COST, from_text=True),
        )
        for model in models
    }
    return OutcomeRecord(id=rid, source=source, prompt=text, outcomes=outcomes)


def _sample_id(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    # pandas writes an integer id column holding gaps as floats (3.0).
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and float(value).is_integer()
    ):
        return str(int(value))
    raise RowProblem(
        "sample_id", f"must be a string or a whole number, got {show(value)}", "Fix the id."
    )


def _numeric(value: object) -> bool:
    if isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value.strip().lower() in ("true", "false")
        return True
    return False
