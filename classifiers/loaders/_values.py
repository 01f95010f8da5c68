"""Checks for single values, shared by the readers; each raises RowProblem naming field and fix."""

from __future__ import annotations

import json
import math

from classifiers.loaders._rows import RowProblem

_TRUE = {"true": 1.0, "false": 0.0}
SCORE_FIX = "Write true or false, or a graded score such as 0.5."


def show(value: object) -> str:
    """A short rendering of a bad value for messages."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def prompt(value: object) -> str:
    """The prompt: a non-empty string, kept exactly as written (ids hash it byte for byte)."""
    if value is None:
        raise RowProblem("prompt", "missing", 'Every row needs a non-empty "prompt".')
    if not isinstance(value, str):
        raise RowProblem("prompt", f"must be a string, got {show(value)}", "Quote the prompt text.")
    if not value.strip():
        raise RowProblem("prompt", "is empty", "Give the prompt text, or delete the row.")
    return value


def optional_text(value: object, field: str) -> str | None:
    """An optional string; absent, null and blank all mean 'not given'."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowProblem(field, f"must be a string, got {show(value)}", f"Quote the {field}.")
    return value if value.strip() else None


def json_score(value: object, field: str) -> float:
    """A JSON score: true/false, or a number in [0, 1]."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:  # NaN fails both comparisons
        return float(value)
    raise RowProblem(
        field, f"must be true/false or a number in [0, 1], got {show(value)}", SCORE_FIX
    )


def cell_score(value: object, field: str) -> float:
    """A score from a CSV cell ('True', 'false', '0.5') or a JSON value."""
    if value is None or value == "":
        raise RowProblem(field, "missing", SCORE_FIX)
    if not isinstance(value, str):
        return json_score(value, field)
    text = value.strip().lower()
    if text in _TRUE:
        return _TRUE[text]
    number = _float(text)
    if number is not None and 0.0 <= number <= 1.0:
        return number
    raise RowProblem(
        field, f"must be True/False or a number in [0, 1], got {show(value)}", SCORE_FIX
    )


def cell_bool(value: str, field: str) -> float:
    """A CSV cell that must read True or False (any case)."""
    text = value.strip().lower()
    if text in _TRUE:
        return _TRUE[text]
    raise RowProblem(
        field,
        f"must be True or False, got {show(value)}",
        "Mark each model's answer True or False.",
    )


def optional_count(value: object, field: str) -> int | None:
    """An optional whole number >= 0, such as a token count."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise RowProblem(
        field, f"must be a whole number >= 0, got {show(value)}", "Write a count such as 120."
    )


def optional_amount(value: object, field: str, *, from_text: bool = False) -> float | None:
    """An optional number >= 0 (a cost or a duration); from_text also takes CSV text and ''."""
    if value is None or (from_text and value == ""):
        return None
    number = _float(value.strip()) if from_text and isinstance(value, str) else value
    if (
        isinstance(number, (int, float))
        and not isinstance(number, bool)
        and math.isfinite(number)
        and number >= 0
    ):
        return float(number)
    raise RowProblem(
        field, f"must be a number >= 0, got {show(value)}", "Write a number such as 0.0012."
    )


def _float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
