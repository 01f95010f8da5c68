"""The judge: one prompt per answer type, and reading its verdict back.

The judge tier sees the conversation's question and the candidate answer, never which tier wrote
it, and must end with `VERDICT: correct` or `VERDICT: incorrect`; anything else is no verdict
(counted, never guessed). docs/live.md shows the prompts.
"""

from __future__ import annotations

import re

from core.llm import Message
from strategies.extraction import AnswerType, extract_answer

_CHOICE_OPTIONS_RE = re.compile(r"(?m)^\s*\(?[A-D][).:]\s+\S")
_FINAL_NUMBER_RE = re.compile(r"####\s*[-$\d]|\\boxed\{|answer\s*(?:is|:|=)\s*:?\s*\**\s*[-$]?\d", re.IGNORECASE)
_VERDICT_RE = re.compile(r"VERDICT:\s*\**\s*(correct|incorrect)\b", re.IGNORECASE)

SYSTEM = (
    "You grade answers written by another assistant. Judge only whether the answer is correct; "
    "ignore style and length. Think briefly, then end with exactly one line: "
    "`VERDICT: correct` or `VERDICT: incorrect`."
)

INSTRUCTIONS: dict[AnswerType, str] = {
    "number": (
        "The question has a numeric answer. Work out the correct final number yourself, then compare it "
        "with the candidate's final number. Equal values in another form (18, 18.0, $18) are correct; "
        "a right method with a wrong final number is incorrect."
    ),
    "choice": (
        "The question is multiple choice. Decide which option is right, then check that the candidate "
        "chose that option (its letter, or its text unambiguously). Choosing several options is incorrect."
    ),
    "text": (
        "Decide whether the candidate's answer is factually correct and actually answers the question. "
        "An answer with a false claim that matters to the question, or that evades it, is incorrect."
    ),
}

TEMPLATE = "{instructions}\n\n### Question\n{question}\n\n### Candidate answer\n{answer}\n\n### Your verdict"


def detect_answer_type(prompt: str, answer: str) -> AnswerType:
    """choice when the prompt lists lettered options; number when the answer states a final number
    (`#### 18`, `\\boxed{18}`, `the answer is 18`, or a short answer holding a number); else text."""
    if len(_CHOICE_OPTIONS_RE.findall(prompt)) >= 2:
        return "choice"
    if _FINAL_NUMBER_RE.search(answer) or (len(answer.split()) <= 12 and extract_answer(answer, "number") is not None):
        return "number"
    return "text"


def judge_messages(question: str, answer: str, answer_type: AnswerType) -> list[Message]:
    """The judge's conversation for one candidate answer."""
    body = TEMPLATE.format(instructions=INSTRUCTIONS[answer_type], question=question.strip(), answer=answer.strip())
    return [Message(role="system", content=SYSTEM), Message(role="user", content=body)]


def parse_verdict(text: str) -> float | None:
    """1.0 for correct, 0.0 for incorrect (the last VERDICT line wins), None when the judge gave none."""
    matches = _VERDICT_RE.findall(text)
    if not matches:
        return None
    return 1.0 if matches[-1].lower() == "correct" else 0.0


def agreement(answer: str, reference_answer: str, answer_type: AnswerType) -> float | None:
    """1.0 when both answers extract to the same number or letter, 0.0 when they differ; None for text or no answer."""
    if answer_type == "text":
        return None
    theirs = extract_answer(reference_answer, answer_type)
    if theirs is None:
        return None
    return 1.0 if extract_answer(answer, answer_type) == theirs else 0.0
