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
from typing import Literal

from strategies.base import Recorder, Sample, StrategyResult
from strategies.sampling import Draw, Sampling, voted_result
from strategies.voting import majority_vote

logger = logging.getLogger(__name__)


class BestOfN(Sampling):
    """n samples, one winner."""

    type: Literal["best_of_n"] = "best_of_n"
    scorer: Literal["agreement", "logprob"] = "agreement"

    def measures_confidence(self) -> bool:
        """Only an agreement pick has a meaningful confidence; a log-probability pick may be a lone answer."""
        return self.scorer == "agreement"

    def describe(self) -> str:
        """e.g. 'best_of_n n=4, scorer logprob'."""
        cot = ", chain of thought" if self.chain_of_thought else ""
        return f"{self.type} n={self.n}, scorer {self.scorer}{cot}"

    async def sample(self, draw: Draw, recorder: Recorder, target: int, earlier_latency_s: float) -> StrategyResult:
        """Draw the missing samples in one call and pick one."""
        await draw.into(recorder, target - len(recorder.samples), logprobs=self.scorer == "logprob")
        return self._pick(recorder, earlier_latency_s)

    def _pick(self, recorder: Recorder, earlier_latency_s: float) -> StrategyResult:
        vote = majority_vote([s.answer for s in recorder.samples])
        if self.scorer == "agreement":
            return voted_result(self.type, recorder, vote, "all_samples", earlier_latency_s)
        scored = [s for s in recorder.samples if s.mean_logprob is not None]
        if not scored:
            logger.warning("best_of_n: the backend returned no log-probabilities; picking by agreement instead.")
            return voted_result(self.type, recorder, vote, "logprob_unavailable", earlier_latency_s)
        best = max(scored, key=_logprob)  # max keeps the first of equals
        votes = sum(1 for s in recorder.samples if best.answer is not None and s.answer == best.answer)
        return StrategyResult(
            strategy=self.type,
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
