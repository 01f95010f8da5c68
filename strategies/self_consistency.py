"""`self_consistency`: sample up to n answers in rounds, majority-vote, stop once the vote is settled.

After each round the vote stops early when either
- the leader cannot be overtaken: its votes exceed the runner-up's plus all samples still to
  be drawn (`decided`), or
- at least `min_samples` are drawn and the leader's agreement is >= `stop_agreement`
  (`agreement`; off when stop_agreement is None).
Otherwise it runs until n samples (`all_samples`). `round_size=None` draws all n in one call:
fixed-n self-consistency, cheapest on backends that batch, with no early stop.
Confidence is the winner's agreement (votes / samples drawn; unreadable samples count).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from strategies.base import Recorder, StrategyProblem, StrategyResult
from strategies.sampling import Draw, Sampling, voted_result
from strategies.voting import majority_vote


class SelfConsistency(Sampling):
    """Majority vote over sampled answers, drawn in rounds with early stopping."""

    type: Literal["self_consistency"] = "self_consistency"
    # Voting needs the reasoning written out to converge; a tier can switch it off.
    chain_of_thought: bool = True
    stop_agreement: float | None = Field(default=None, gt=0, le=1)
    round_size: int | None = Field(default=None, ge=1)
    min_samples: int = Field(default=3, ge=1)

    def problems(self, *, backend: str, max_tokens: int) -> Iterator[StrategyProblem]:
        """A round cannot be larger than the whole vote."""
        if self.round_size is not None and self.round_size > self.n:
            yield ("round_size",), f"must be <= n ({self.n})"

    async def sample(self, draw: Draw, recorder: Recorder, target: int, earlier_latency_s: float) -> StrategyResult:
        """Draw rounds until the vote is settled or `target` samples are in."""
        round_size = self.round_size or max(1, target - len(recorder.samples))
        vote = majority_vote([s.answer for s in recorder.samples])
        stop_reason = "all_samples"
        while len(recorder.samples) < target:
            want = min(round_size, target - len(recorder.samples))
            await draw.into(recorder, want)
            vote = majority_vote([s.answer for s in recorder.samples])
            remaining = target - len(recorder.samples)
            if remaining <= 0:
                break
            if vote.decided(remaining):
                stop_reason = "decided"
                break
            drawn = len(recorder.samples)
            if (
                self.stop_agreement is not None
                and drawn >= min(self.min_samples, target)
                and vote.agreement >= self.stop_agreement
            ):
                stop_reason = "agreement"
                break
        return voted_result(self.type, recorder, vote, stop_reason, earlier_latency_s)
