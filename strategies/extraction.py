"""Final-answer extraction and grading for numbers, multiple-choice letters and short text.

Each extractor returns a canonical string (so equal answers compare equal) or None when the
text holds no answer of that type.

- number: the last `#### N`, else the last `\\boxed{N}`, else the last "answer is / answer: N",
  else the last number in the text. "$1,234.50" -> "1234.5", "3/4" and "0.75" -> "0.75",
  "-7" -> "-7", "18.0" -> "18".
- choice: "answer is (B)", "Answer: C", "the answer is b", "option D", else the last "(B)",
  else a text that starts with "B." / "B)" / "B:" or is just "B". Letters A-J, returned upper case.
- text: what follows the last "answer is" / "answer:" (to the end of that line), else the first
  non-empty line; lower-cased, punctuation and the articles a/an/the removed, spaces collapsed.
"""

from __future__ import annotations

import re
import string
from fractions import Fraction
from typing import Literal, get_args

from core.errors import ConfigError

AnswerType = Literal["number", "choice", "text"]
ANSWER_TYPES: tuple[str, ...] = get_args(AnswerType)

_NUMBER = (
    r"(?P<sign>(?<![\w)\]])[-\u2212])?\s?\$?\s?(?=\.?\d)"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?P<frac>\.\d+)?"
    r"(?:\s?/\s?(?P<den>\d+))?"
)
_NUMBER_RE = re.compile(rf"(?<![\d.,]){_NUMBER}(?![\d])")
_HASHES_RE = re.compile(rf"####\s*{_NUMBER}")
_BOXED_RE = re.compile(rf"\\boxed\{{\s*{_NUMBER}\s*\}}")
_ANSWER_NUMBER_RE = re.compile(rf"answer\s*(?:is|:|=)\s*:?\s*(?:\*\*)?{_NUMBER}", re.IGNORECASE)

_CHOICE_LETTERS = "A-J"
_ANSWER_CHOICE_RE = re.compile(
    rf"(?:answer\s*(?:is|:)|option|choice)\s*:?\s*(?:option\s*)?\(?\*{{0,2}}([{_CHOICE_LETTERS}])\*{{0,2}}\)?(?![\w])",
    re.IGNORECASE,
)
_PAREN_CHOICE_RE = re.compile(rf"\(([{_CHOICE_LETTERS}a-j])\)")
_LEADING_CHOICE_RE = re.compile(rf"^\s*\(?([{_CHOICE_LETTERS}])\s*(?:[).:]|$)")

_ANSWER_TEXT_RE = re.compile(r"answer\s*(?:is|:)\s*:?\s*(?P<rest>[^\n]*)", re.IGNORECASE)
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _canonical_number(match: re.Match[str]) -> str | None:
    integer, frac, den = match.group("int"), match.group("frac"), match.group("den")
    if integer is None and frac is None:
        return None
    value = Fraction((integer or "0").replace(",", "") + (frac or ""))
    if den is not None:
        if int(den) == 0:
            return None
        value /= int(den)
    if match.group("sign"):
        value = -value
    return format_number(value)


def format_number(value: Fraction) -> str:
    """Canonical text of a number: integers plainly, others as a decimal to 6 places, no trailing zeros."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _last_number(pattern: re.Pattern[str], text: str) -> str | None:
    for match in reversed(list(pattern.finditer(text))):
        number = _canonical_number(match)
        if number is not None:
            return number
    return None


def extract_number(text: str) -> str | None:
    """The final numeric answer in `text`, canonicalised, or None."""
    for pattern in (_HASHES_RE, _BOXED_RE, _ANSWER_NUMBER_RE, _NUMBER_RE):
        number = _last_number(pattern, text)
        if number is not None:
            return number
    return None


def extract_choice(text: str) -> str | None:
    """The multiple-choice letter (A-J, upper case) that `text` answers, or None."""
    for pattern in (_ANSWER_CHOICE_RE, _PAREN_CHOICE_RE):
        matches = pattern.findall(text)
        if matches:
            return str(matches[-1]).upper()
    match = _LEADING_CHOICE_RE.match(text)
    return match.group(1) if match else None


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    lowered = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES_RE.sub(" ", lowered).split())


def extract_text(text: str) -> str | None:
    """The short text answer in `text`, normalised, or None when it is empty."""
    matches = list(_ANSWER_TEXT_RE.finditer(text))
    if matches:
        candidate = matches[-1].group("rest")
    else:
        candidate = next((line for line in text.splitlines() if line.strip()), "")
    normalized = normalize_text(candidate)
    return normalized or None


def check_answer_type(answer_type: str) -> AnswerType:
    """Return `answer_type` if known, else raise ConfigError listing the choices."""
    if answer_type not in ANSWER_TYPES:
        raise ConfigError(f"answer_type: must be one of {', '.join(ANSWER_TYPES)} (got {answer_type!r}).")
    return answer_type  # type: ignore[return-value]


def extract_answer(text: str, answer_type: AnswerType) -> str | None:
    """Extract the final answer of the given type from a model's text."""
    check_answer_type(answer_type)
    if answer_type == "number":
        return extract_number(text)
    if answer_type == "choice":
        return extract_choice(text)
    return extract_text(text)


def reference_answer(reference: str, answer_type: AnswerType) -> str | None:
    """Canonicalise a dataset's reference answer (e.g. GSM8K's '... #### 18' -> '18')."""
    return extract_answer(reference, answer_type)


def grade(prediction: str | None, reference: str, answer_type: AnswerType) -> bool:
    """True when an extracted prediction equals the canonical reference answer."""
    expected = reference_answer(reference, answer_type)
    return prediction is not None and expected is not None and prediction == expected
