"""Evaluate a saved classifier on labelled data, and score prompts in bulk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifiers.estimator import DifficultyClassifier
from classifiers.selection import CrossValidation, metrics_from_proba
from classifiers.targets import TrainingSet
from core.errors import DataError
from core.jsonl import json_objects


@dataclass(frozen=True)
class Evaluation:
    """Metrics of a saved model on a data set."""

    data: TrainingSet
    result: CrossValidation


def evaluate(classifier: DifficultyClassifier, data: TrainingSet) -> Evaluation:
    """Score every row and compute overall and per-source metrics against its outcomes."""
    if data.tiers != classifier.tiers_ and data.targets.shape[1] != len(classifier.tiers_):
        raise DataError(
            f"The data has tiers {data.tiers} but the classifier was trained on {classifier.tiers_}; "
            "evaluate on data with the same tiers."
        )
    proba = classifier.predict_proba(data.texts)
    return Evaluation(data, metrics_from_proba(classifier.get_params(), proba, data.targets, data.sources))


def batched(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_texts(classifier: DifficultyClassifier, texts: Sequence[str], batch_size: int = 256) -> Iterator[np.ndarray]:
    """Difficulty of each text, yielded batch by batch so callers can show progress and write as they go."""
    for batch in batched(texts, batch_size):
        yield classifier.predict_difficulty(batch)


def write_out_of_fold_scores(path: Path, ids: Sequence[str], proba: np.ndarray) -> None:
    """One {id, difficulty, gain} JSON line per row; written to a temporary name, then renamed."""
    import json

    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for row_id, row in zip(ids, proba, strict=True):
            difficulty, gain = 1.0 - float(row[0]), float(row[-1] - row[0])
            handle.write(json.dumps({"id": row_id, "difficulty": round(difficulty, 6), "gain": round(gain, 6)}) + "\n")
    partial.replace(path)


def read_score_input(path: Path) -> list[tuple[object, str]]:
    """Rows of a JSONL file with `id` and `prompt`, in order; a bad row is an error naming file and line."""
    rows: list[tuple[object, str]] = []
    for number, row in json_objects(path, "'id' and 'prompt'"):
        if "id" not in row:
            raise DataError(f"{path} line {number}: id: missing. Every row needs an 'id' to match its score.")
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{path} line {number}: prompt: must be a non-empty string.")
        rows.append((row["id"], prompt))
    if not rows:
        raise DataError(f"{path} has no rows to score.")
    return rows
