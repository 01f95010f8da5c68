"""`best_of_n`: draw n samples in one call and keep the best by a scorer.

- `agreement`: the majority answer (ties to the first seen); its text is the first sample
  that gave it.
- `logprob`: the sample with the highest mean token log-probability. When the backend returns
  no log-probabilities, this falls back to `agreement`, logs a warning, and says so in
  `stop_reason` ("logprob_unavailable").
Confidence is always the chosen answer's agreement among the n samples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from core.llm import Backend, GenerationParams, Message
from core.errors import ConfigError
from strategies.base import Recorder, Sample, StrategyResult, with_instruction
from strategies.chain_of_thought import STEP_BY_STEP
from strategies.extraction import AnswerType, check_answer_type
from strategies.self_consistency import check_sampling, voted_result
from strategies.voting import majority_vote

logger = logging.getLogger(__name__)

Scorer = Literal["agreement", "logprob"]
SCORERS: tuple[str, ...] = get_args(Scorer)


@dataclass(frozen=True, slots=True)
class BestOfNConfig:
    """Settings of `best_of_n` (field names match router.yaml)."""

    n: int = 4
    scorer: Scorer = "agreement"
    temperature: float = 0.7
    answer_type: AnswerType = "text"
    chain_of_thought: bool = False

    def __post_init__(self) -> None:
        check_sampling("best_of_n", self.n, self.temperature)
        check_answer_type(self.answer_type)
        if self.scorer not in SCORERS:
            raise ConfigError(f"best_of_n.scorer: must be one of {', '.join(SCORERS)} (got {self.scorer!r}).")


class BestOfN:
    """n samples, one winner."""

    name = "best_of_n"

    def __init__(self, config: BestOfNConfig | None = None) -> None:
        self.config = config or BestOfNConfig()

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """Draw n samples in one call and pick one."""
        recorder = Recorder(self.config.answer_type)
        await recorder.draw(backend, self._prompt(messages), self._params(params, self.config.n))
        return self._pick(recorder, 0.0)

    async def extend(
        self,
        backend: Backend,
        messages: Sequence[Message],
        params: GenerationParams,
        previous: StrategyResult,
        extra: int,
    ) -> StrategyResult:
        """Draw `extra` more samples and pick again among all of them."""
        recorder = Recorder.continuing(self.config.answer_type, previous)
        await recorder.draw(backend, self._prompt(messages), self._params(params, extra))
        return self._pick(recorder, previous.latency_s)

    def _prompt(self, messages: Sequence[Message]) -> list[Message]:
        return with_instruction(messages, STEP_BY_STEP) if self.config.chain_of_thought else list(messages)

    def _params(self, params: GenerationParams, n: int) -> GenerationParams:
        return params.replace(n=n, temperature=self.config.temperature, logprobs=self.config.scorer == "logprob")

    def _pick(self, recorder: Recorder, earlier_latency_s: float) -> StrategyResult:
        vote = majority_vote([s.answer for s in recorder.samples])
        if self.config.scorer == "agreement":
            return voted_result(self.name, recorder, vote, "all_samples", earlier_latency_s)
        scored = [s for s in recorder.samples if s.mean_logprob is not None]
        if not scored:
            logger.warning("best_of_n: the backend returned no log-probabilities; picking by agreement instead.")
            return voted_result(self.name, recorder, vote, "logprob_unavailable", earlier_latency_s)
        best = max(scored, key=_logprob)  # max keeps the first of equals
        votes = sum(1 for s in recorder.samples if best.answer is not None and s.answer == best.answer)
        return StrategyResult(
            strategy=self.name,
            text=best.text,
            answer=best.answer,
            confidence=votes / len(recorder.samples),
            samples_used=len(recorder.samples),
            samples=tuple(recorder.samples),
            calls=tuple(recorder.calls),
            latency_s=recorder.elapsed() + earlier_latency_s,
            stop_reason="all_samples",
        )


def _logprob(sample: Sample) -> float:
    return sample.mean_logprob if sample.mean_logprob is not None else float("-inf")
