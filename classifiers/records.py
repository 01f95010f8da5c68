"""The routing-outcome record: one prompt and how each model tier did on it.

The on-disk form is documented in docs/data-format.md. Tiers are listed
cheapest first; the first tier is the one whose failure defines difficulty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TierOutcome:
    """How one tier did on one prompt: `correct` is 1.0/0.0, or a graded score in [0, 1]."""

    correct: float
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """One prompt with its per-tier outcomes, or with a direct difficulty label in [0, 1]."""

    id: str
    source: str
    prompt: str
    outcomes: Mapping[str, TierOutcome] = field(default_factory=dict)
    difficulty: float | None = None

    @property
    def source_group(self) -> str:
        """The part of `source` before the first '/', e.g. 'mmlu' for 'mmlu/anatomy'."""
        return self.source.split("/", 1)[0]


def record_id(source: str, prompt: str) -> str:
    """Stable id for a prompt: the first 16 hex digits of sha1(source + newline + prompt)."""
    return hashlib.sha1(f"{source}\n{prompt}".encode()).hexdigest()[:16]
