"""Questions with reference answers: JSONL rows of `question` (or `prompt`), `answer`, optional `id`.

GSM8K's `... #### 18` answers, multiple-choice letters and short text are all accepted; the answer
type (how predictions are extracted and compared) is detected from the references unless given.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import DataError
from core.jsonl import json_objects
from strategies import AnswerType, reference_answer

_LETTER = re.compile(r"^\(?[A-Ja-j]\)?\.?$")


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    """One question and the answer it is graded against."""

    id: str
    question: str
    reference: str


def load_questions(path: Path, limit: int | None = None) -> list[EvalQuestion]:
    """Read the dataset; a malformed row is an error naming the file and line."""
    questions: list[EvalQuestion] = []
    seen: set[str] = set()
    for number, row in json_objects(path, "'question' and 'answer'"):
        text = row.get("question", row.get("prompt"))
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path} line {number}: question: must be a non-empty string ('question' or 'prompt').")
        answer = row.get("answer")
        if isinstance(answer, int | float) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            raise DataError(f"{path} line {number}: answer: must be a non-empty string or a number.")
        row_id = str(row["id"]) if row.get("id") is not None else hashlib.sha1(text.encode()).hexdigest()[:16]
        if row_id in seen:
            raise DataError(f"{path} line {number}: id: {row_id!r} appears twice; ids must be unique.")
        seen.add(row_id)
        questions.append(EvalQuestion(row_id, text, answer))
        if limit is not None and len(questions) >= limit:
            break
    if not questions:
        raise DataError(f"{path} has no questions.")
    return questions


def detect_answer_type(questions: list[EvalQuestion]) -> AnswerType:
    """number when every reference is numeric (or GSM8K '#### N'), choice when every one is a letter, else text."""
    references = [q.reference.strip() for q in questions]
    if all(_LETTER.match(r) for r in references):
        return "choice"
    if all(reference_answer(r, "number") is not None and ("####" in r or _is_number(r)) for r in references):
        return "number"
    return "text"


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return False
    return True
