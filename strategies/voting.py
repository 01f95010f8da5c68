"""Majority voting over extracted answers.

Rules:
- Samples whose answer could not be extracted (None) count in the total but never win, so they
  lower the agreement: agreement = votes for the winner / all samples.
- Ties are broken by first appearance: among answers with the most votes, the one that some
  sample gave first wins. This is deterministic and favours nothing but sampling order.
- A leader "cannot be overtaken" when its votes exceed the runner-up's plus every sample still
  to be drawn (strictly, so not even a tie is possible).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Vote:
    """The outcome of a majority vote."""

    answer: str | None
    votes: int
    runner_up_votes: int
    total: int
    counts: tuple[tuple[str, int], ...]

    @property
    def agreement(self) -> float:
        """Share of all samples that gave the winning answer (0.0 when nothing was extracted)."""
        return self.votes / self.total if self.total else 0.0

    def decided(self, remaining: int) -> bool:
        """True when `remaining` more samples could not change the winner, even to a tie."""
        return self.answer is not None and self.votes > self.runner_up_votes + remaining


def majority_vote(answers: Sequence[str | None]) -> Vote:
    """Count answers and pick the most common; ties go to the answer seen first."""
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    # dicts keep insertion order, i.e. first appearance; sorted() is stable, so ties keep it.
    ranked = tuple(sorted(counts.items(), key=lambda item: -item[1]))
    if not ranked:
        return Vote(None, 0, 0, len(answers), ())
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    return Vote(ranked[0][0], ranked[0][1], runner_up, len(answers), ranked)
