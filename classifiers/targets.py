"""Turn loaded records into training targets: a success probability per tier.

Label definition: column j of Y is the probability that tier j answers correctly. Tiers come in
data order, cheapest first, so difficulty = 1 - Y[:, 0] = the probability the cheapest tier fails.
Records with a direct difficulty label (the `labels` format) train one pseudo-tier, `label`,
whose success is 1 - difficulty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from classifiers.records import OutcomeRecord
from core.errors import DataError

LABEL_TIER = "label"


@dataclass(frozen=True)
class TrainingSet:
    """Texts with their per-tier success targets and provenance."""

    texts: list[str]
    targets: np.ndarray  # (n, n_tiers) in [0, 1]
    tiers: list[str]
    ids: list[str]
    sources: list[str]

    @property
    def label_definition(self) -> str:
        """A sentence that says what the difficulty score means for this data."""
        if self.tiers == [LABEL_TIER]:
            return "difficulty = the labelled difficulty in [0, 1] (1 = hard)"
        return f"difficulty = P(tier {self.tiers[0]!r} answers incorrectly); per-tier success P for {self.tiers}"


def training_set(records: Sequence[OutcomeRecord]) -> TrainingSet:
    """Build targets from records that all share one tier set, or that all carry difficulty labels."""
    if not records:
        raise DataError("No training rows were loaded. Check the --data paths and their format.")
    first = records[0]
    labelled = not first.outcomes
    tiers = [LABEL_TIER] if labelled else list(first.outcomes)
    targets = np.empty((len(records), len(tiers)), dtype=np.float64)
    for row, record in enumerate(records):
        if labelled:
            if record.outcomes or record.difficulty is None:
                raise DataError(
                    f"Row {record.id!r} ({record.source}) mixes formats: the first row has a difficulty label, "
                    "this one has tier outcomes. Train on one kind of data at a time."
                )
            targets[row, 0] = 1.0 - record.difficulty
            continue
        if list(record.outcomes) != tiers:
            raise DataError(
                f"Row {record.id!r} ({record.source}) has tiers {list(record.outcomes)}, but earlier rows have "
                f"{tiers}. All training data must list the same tiers in the same order (cheapest first)."
            )
        targets[row] = [outcome.correct for outcome in record.outcomes.values()]
    return TrainingSet(
        texts=[record.prompt for record in records],
        targets=targets,
        tiers=tiers,
        ids=[record.id for record in records],
        sources=[record.source for record in records],
    )
