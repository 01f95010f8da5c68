"""Reader for RouteLLM's published eval CSVs (routellm/evals/*/...csv in lm-sys/RouteLLM).

Header: prompt,<model>,<model>[,<model>_response...]; model cells are True/False. With exactly
two models the tiers are "weak" and "strong" in column order, which is how the shared
outcomes.jsonl was made, so both give the same records.
"""

from __future__ import annotations

from classifiers.loaders._rows import RowProblem, RowSink, Source, csv_header, iter_csv
from classifiers.loaders._values import cell_bool, prompt
from classifiers.records import OutcomeRecord, TierOutcome, record_id
from core.errors import DataError

TWO_TIERS = ("weak", "strong")


def source_name(stem: str) -> str:
    """`gsm8k_responses` -> 'gsm8k', `mmlu_anatomy` -> 'mmlu/anatomy', anything else unchanged."""
    name = stem.removesuffix("_responses") or stem
    if name.startswith("mmlu_") and len(name) > len("mmlu_"):
        return "mmlu/" + name.removeprefix("mmlu_")
    return name


def model_columns(header: list[str]) -> list[str]:
    """Every column but `prompt`, `*_response`, and a pandas index column ('' or 'Unnamed: 0')."""
    return [
        name
        for name in header
        if name != "prompt"
        and not name.endswith("_response")
        and name.strip()
        and not name.startswith("Unnamed:")
    ]


def read(src: Source, sink: RowSink) -> None:
    """Parse every row: one record per prompt, one tier per model column."""
    header = csv_header(src)
    models = model_columns(header)
    if "prompt" not in header or not models:
        raise DataError(
            f"{src.name} line 1: a RouteLLM CSV needs a 'prompt' column and at least one model "
            f"column of True/False, but its header is {','.join(header)}. "
            "See docs/data-format.md, or pass another --format."
        )
    tiers = TWO_TIERS if len(models) == 2 else tuple(models)
    source = source_name(src.stem)
    for line, row in iter_csv(src, sink):
        try:
            text = prompt(row["prompt"])
            outcomes = {
                tier: TierOutcome(correct=cell_bool(row[model], model), model=model)
                for tier, model in zip(tiers, models, strict=True)
            }
        except RowProblem as problem:
            sink.reject(line, problem)
            continue
        sink.accept(line, OutcomeRecord(record_id(source, text), source, text, outcomes))
