"""Final-answer extraction on hand-written model outputs, and grading against references."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from strategies import (
    extract_answer,
    extract_choice,
    extract_number,
    extract_text,
    grade,
    normalize_text,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 18", "18"),
        ("She pays 3 * 6 = 18 dollars.\n#### 18", "18"),
        ("#### 1,234", "1234"),
        ("The answer is 42.", "42"),
        ("the answer is: 7", "7"),
        ("Answer: $1,234.50", "1234.5"),
        ("The final answer is **18**.", "18"),
        ("It costs $5.", "5"),
        ("The temperature is -7 degrees.", "-7"),
        ("It drops by \u22123.", "-3"),
        ("5 - 8 = -3", "-3"),
        ("7-2=5", "5"),
        ("14 + 15 = 29", "29"),
        ("3/4", "0.75"),
        ("The answer is 3/4 of a cup.", "0.75"),
        ("0.75", "0.75"),
        (".5 of it", "0.5"),
        ("18.0", "18"),
        ("2.50", "2.5"),
        ("1/3", "0.333333"),
        ("There are 1,000,000 people.", "1000000"),
        ("\\boxed{12}", "12"),
        ("First 3, then 4, so \\boxed{7} and later 99", "7"),
        ("answer is 12 but #### 13", "13"),
        ("I ate 2 apples and 3 pears, 5 in all", "5"),
        ("50% of them", "50"),
        ("no numbers here", None),
        ("", None),
        ("1/0", None),  # not a number
    ],
)
def test_numbers(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(B)", "B"),
        ("The correct answer is (B).", "B"),
        ("Answer: C", "C"),
        ("answer: c", "C"),
        ("the answer is b", "B"),
        ("The answer is D because it is the largest.", "D"),
        ("I pick option A.", "A"),
        ("B. Paris", "B"),
        ("C) 42", "C"),
        ("D", "D"),
        ("  E:", "E"),
        ("I think (c) is right", "C"),
        ("Between (A) and (C), I choose (C)", "C"),
        ("A cat sat on the mat.", None),
        ("The answer is apple.", None),
        ("I don't know.", None),
        ("", None),
    ],
)
def test_choices(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected
    assert extract_answer(text, "choice") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris", "paris"),
        ("The answer is Paris.", "paris"),
        ("Answer: The Eiffel Tower!", "eiffel tower"),
        ("  \nParis, France\nmore lines", "paris france"),
        ("I think so.\nThe answer is: a cat", "cat"),
        ("   ", None),
        ("The.", None),
    ],
)
def test_short_text(text: str, expected: str | None) -> None:
    assert extract_text(text) == expected


def test_normalize_text() -> None:
    assert normalize_text("  The  QUICK, brown fox!  ") == "quick brown fox"
    assert normalize_text("An apple a day") == "apple day"


@pytest.mark.parametrize(
    ("prediction_text", "reference", "answer_type", "correct"),
    [
        ("So she has 18 left.", "She has 16 - 3 + 5 = 18.\n#### 18", "number", True),
        ("The answer is 18.0", "#### 18", "number", True),
        ("The answer is 17", "#### 18", "number", False),
        ("$1,234.50", "1234.5", "number", True),
        ("The answer is (b)", "B", "choice", True),
        ("Answer: C", "(B)", "choice", False),
        ("The answer is the Eiffel Tower.", "Eiffel tower", "text", True),
        ("no idea", "Paris", "text", False),
        ("", "18", "number", False),
    ],
)
def test_grade(prediction_text: str, reference: str, answer_type: str, correct: bool) -> None:
    prediction = extract_answer(prediction_text, answer_type)  # type: ignore[arg-type]
    assert grade(prediction, reference, answer_type) is correct  # type: ignore[arg-type]


def test_unknown_answer_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="answer_type: must be one of number, choice, text"):
        extract_answer("42", "integer")  # type: ignore[arg-type]
