"""`verify`: answer once, then ask the same tier whether that answer is right.

The check is a second call: the conversation, the answer as the assistant's turn, and a request to
reply yes or no. Confidence is 1.0 for yes, 0.0 for no, and None when the reply is neither (no
signal, so escalation leaves it alone). With an escalation step such as
`{from_tier: fast, when: {agreement_below: 0.5}, then: {to_tier: strong}}` a "no" moves the
question up. The client gets the first call's answer; both calls are accounted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from core.llm import Backend, GenerationParams, Message
from strategies.base import OneCall, Recorder, Strategy, StrategyResult

CHECK_ANSWER = "Check the answer above. Is it correct? Reply with only 'yes' or 'no'."
_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


class Verify(Strategy):
    """One answer and one yes/no check by the same tier; confidence is the check's verdict."""

    type: Literal["verify"] = "verify"
    check_instruction: str = Field(default=CHECK_ANSWER, min_length=1)
    check_max_tokens: int = Field(default=16, ge=1)

    def measures_confidence(self) -> bool:
        """True: the check's verdict."""
        return True

    def handles_structured_answers(self) -> bool:
        """False: a yes/no check of a tool call or a JSON document asks the model something else."""
        return False

    def max_samples(self) -> int:
        """Two calls: the answer and the check."""
        return 2

    def one_call(self, messages: Sequence[Message], params: GenerationParams) -> OneCall | None:
        """None: the check must see the whole answer first."""
        return None

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """Answer, then check the answer."""
        recorder = Recorder.for_call(self.answer_type, params)
        answer = (await recorder.draw(backend, messages, params.replace(n=1)))[0]
        check: list[Message] = [
            *messages,
            Message(role="assistant", content=answer.text),
            Message(role="user", content=self.check_instruction),
        ]
        check_params = params.replace(n=1, temperature=0.0, max_tokens=self.check_max_tokens)
        verdict = (await recorder.draw(backend, check, check_params))[0]
        found = _VERDICT.search(verdict.text)
        confidence = None if found is None else (1.0 if found.group(1).lower() == "yes" else 0.0)
        recorder.samples.remove(verdict)  # the check is not a candidate answer
        return recorder.single(self.type, answer, confidence)
