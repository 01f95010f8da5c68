"""What a policy would have done on recorded routing outcomes, beside the baselines that frame it.

Pure functions over records, difficulty arrays and a Policy: no classifier, no files (except
`load_scores`). Costs, per record and tier: the row's `cost_usd` when present; else its token
counts priced at the tier's price (a missing side estimated: input from the prompt length, output
from the tier's expected_output_tokens); else the policy's own estimate for the tier, the one
`decide` reports (prompt length at ~4 characters per token, expected_output_tokens times the
strategy's samples).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from classifiers.records import OutcomeRecord
from core.errors import ConfigError, DataError
from core.metrics import cost_per_correct, ratio
from core.llm import estimate_tokens
from policies.policy import Policy

MappingMethod = Literal["explicit", "by name", "by cost order"]


@dataclass(frozen=True)
class OutcomeMatrix:
    """Per-tier scores and costs of every record: rows are tiers cheapest first, columns records."""

    tiers: tuple[str, ...]
    scores: NDArray[np.float64]
    costs: NDArray[np.float64]
    prompt_tokens: NDArray[np.int64]

    @property
    def size(self) -> int:
        """Number of records."""
        return int(self.scores.shape[1])


@dataclass(frozen=True)
class RouterResult:
    """Accuracy and spend of one router on the records."""

    name: str
    accuracy: float
    total_cost_usd: float
    cost_per_1k_usd: float
    cost_per_correct_usd: float | None
    quality: float | None  # accuracy relative to always-strongest
    shares: dict[str, float]


@dataclass(frozen=True)
class SimulationReport:
    """The policy's result first, then always-cheapest, always-strongest, random and oracle."""

    source: str
    policy_version: str
    mapping: dict[str, str]
    tiers: tuple[str, ...]  # cheapest first
    records: int
    results: tuple[RouterResult, ...]

    def result(self, name: str) -> RouterResult:
        """The result of the router called `name`."""
        return next(r for r in self.results if r.name == name)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return asdict(self)


def outcome_columns(records: Sequence[OutcomeRecord]) -> list[str]:
    """Outcome columns in the order the data lists them."""
    return list(dict.fromkeys(column for record in records for column in record.outcomes))


def resolve_mapping(
    policy: Policy, columns: Sequence[str], explicit: Mapping[str, str] | None = None
) -> tuple[dict[str, str], MappingMethod]:
    """Tier -> outcome column: explicit pairs, then equal names, else tiers by cost onto data order."""
    explicit = dict(explicit or {})
    for tier, column in explicit.items():
        if tier not in policy.tier_names:
            raise ConfigError(
                f"--map names tier '{tier}', which the policy does not have; its tiers are: "
                f"{', '.join(policy.tier_names)}."
            )
        if column not in columns:
            raise ConfigError(
                f"--map names outcome column '{column}', which the data does not have; its columns "
                f"are: {', '.join(columns)}."
            )
    mapping = dict(explicit)
    for tier in policy.tier_names:
        if tier not in mapping and tier in columns:
            mapping[tier] = tier
    needed = [t for t in policy.tiers_by_cost if t in {r.tier for r in policy.config.rules}]
    if all(t in mapping for t in needed):
        return mapping, "explicit" if explicit else "by name"
    if not mapping:
        for tiers in (list(policy.tiers_by_cost), needed):
            if len(tiers) == len(columns):
                return dict(zip(tiers, columns, strict=True)), "by cost order"
    unmapped = [t for t in needed if t not in mapping]
    raise ConfigError(
        f"The policy's tiers {', '.join(unmapped)} have no outcome column (the data has: "
        f"{', '.join(columns)}); map each with --map TIER=COLUMN."
    )


def build_matrix(
    records: Sequence[OutcomeRecord], policy: Policy, mapping: Mapping[str, str]
) -> OutcomeMatrix:
    """Scores and costs of each mapped tier on each record (see the module docstring for costs)."""
    if not records:
        raise DataError("The outcome data has no records; give a file with at least one row.")
    tiers = tuple(t for t in policy.tiers_by_cost if t in mapping)
    tokens = np.array([estimate_tokens(r.prompt) for r in records], dtype=np.int64)
    scores = np.empty((len(tiers), len(records)))
    costs = np.empty((len(tiers), len(records)))
    for row, tier in enumerate(tiers):
        column = mapping[tier]
        price = policy.price(tier)
        default_output = policy.tier(tier).expected_output_tokens
        for i, record in enumerate(records):
            outcome = record.outcomes.get(column)
            if outcome is None:
                raise DataError(
                    f"Record {record.id} has no outcome for column '{column}'; every record needs "
                    "every mapped column (or map the tier to another column with --map)."
                )
            scores[row, i] = outcome.correct
            if outcome.cost_usd is not None:
                costs[row, i] = outcome.cost_usd
            elif outcome.input_tokens is not None or outcome.output_tokens is not None:
                n_in = outcome.input_tokens if outcome.input_tokens is not None else tokens[i]
                n_out = (
                    outcome.output_tokens if outcome.output_tokens is not None else default_output
                )
                costs[row, i] = n_in * price.input_per_token + n_out * price.output_per_token
            else:
                costs[row, i] = policy.expected_cost(tier, int(tokens[i]))
    return OutcomeMatrix(tiers, scores, costs, tokens)


def route(
    policy: Policy, matrix: OutcomeMatrix, difficulties: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Row of `matrix` (tier) the policy picks for each record."""
    if difficulties.shape != (matrix.size,):
        raise DataError(
            f"Got {difficulties.shape[0]} difficulty scores for {matrix.size} records; score the "
            "same data file."
        )
    row_of = {tier: row for row, tier in enumerate(matrix.tiers)}
    chosen = np.empty(matrix.size, dtype=np.int64)
    pick = policy.route
    for i, (difficulty, tokens) in enumerate(
        zip(difficulties.tolist(), matrix.prompt_tokens.tolist(), strict=True)
    ):
        tier = pick(difficulty, tokens)
        row = row_of.get(tier)
        if row is None:
            raise ConfigError(
                f"The policy sends record {i} to tier '{tier}', which has no outcome column; "
                f"map it with --map {tier}=COLUMN."
            )
        chosen[i] = row
    return chosen


def evaluate(
    name: str, matrix: OutcomeMatrix, chosen: NDArray[np.int64], strongest_accuracy: float | None
) -> RouterResult:
    """Accuracy, spend and tier shares of the routing `chosen` (a matrix row per record)."""
    columns = np.arange(matrix.size)
    scores = matrix.scores[chosen, columns]
    total = float(matrix.costs[chosen, columns].sum())
    shares = np.bincount(chosen, minlength=len(matrix.tiers)) / matrix.size
    return _result(
        name,
        matrix=matrix,
        accuracy=float(scores.mean()),
        total=total,
        correct=float(scores.sum()),
        shares=shares,
        strongest_accuracy=strongest_accuracy,
    )


def simulate(
    records: Sequence[OutcomeRecord],
    difficulties: NDArray[np.float64],
    policy: Policy,
    mapping: Mapping[str, str],
) -> SimulationReport:
    """The policy beside always-cheapest, always-strongest, a random router at its shares, and the oracle."""
    matrix = build_matrix(records, policy, mapping)
    cheapest, strongest = extreme_rows(matrix)
    n = matrix.size
    strong_accuracy = float(matrix.scores[strongest].mean())
    results = [
        evaluate("policy", matrix, route(policy, matrix, difficulties), strong_accuracy),
        evaluate("always-cheapest", matrix, np.full(n, cheapest), strong_accuracy),
        evaluate("always-strongest", matrix, np.full(n, strongest), strong_accuracy),
    ]
    # A random router with the policy's shares: its expected accuracy and cost, exactly.
    shares = np.array([results[0].shares[t] for t in matrix.tiers])
    accuracy = float(shares @ matrix.scores.mean(axis=1))
    total = float(shares @ matrix.costs.sum(axis=1))
    results.append(
        _result(
            "random",
            matrix=matrix,
            accuracy=accuracy,
            total=total,
            correct=accuracy * n,
            shares=shares,
            strongest_accuracy=strong_accuracy,
        )
    )
    results.append(evaluate("oracle", matrix, oracle_rows(matrix), strong_accuracy))
    return SimulationReport(
        source=policy.source,
        policy_version=policy.version,
        mapping={t: mapping[t] for t in matrix.tiers},
        tiers=matrix.tiers,
        records=n,
        results=tuple(results),
    )


def extreme_rows(matrix: OutcomeMatrix) -> tuple[int, int]:
    """Rows of the cheapest and the strongest (dearest) tier by mean cost on the data."""
    mean_cost = matrix.costs.mean(axis=1)
    order = sorted(range(len(matrix.tiers)), key=lambda row: (mean_cost[row], row))
    return order[0], order[-1]


def oracle_rows(matrix: OutcomeMatrix) -> NDArray[np.int64]:
    """Per record, the cheapest tier with the best score (the cheapest correct tier, else the cheapest)."""
    best = matrix.scores.max(axis=0)
    masked = np.where(matrix.scores == best, matrix.costs, np.inf)
    rows: NDArray[np.int64] = np.argmin(masked, axis=0).astype(np.int64)
    return rows


def compare(base: SimulationReport, other: SimulationReport) -> dict[str, float | None]:
    """The policy of `other` minus that of `base`: what an edit changes."""
    a, b = base.result("policy"), other.result("policy")
    per_correct = (
        None
        if a.cost_per_correct_usd is None or b.cost_per_correct_usd is None
        else b.cost_per_correct_usd - a.cost_per_correct_usd
    )
    return {
        "accuracy": b.accuracy - a.accuracy,
        "total_cost_usd": b.total_cost_usd - a.total_cost_usd,
        "cost_per_1k_usd": b.cost_per_1k_usd - a.cost_per_1k_usd,
        "cost_per_correct_usd": per_correct,
    }


def load_scores(
    path: str | Path, records: Sequence[OutcomeRecord], key: str = "difficulty"
) -> NDArray[np.float64]:
    """Scores for `records`, in their order, from a JSONL of {"id", key} rows.

    `key` is the policy's classifier score: "difficulty" (as `router classifier score` writes), or
    "gain" (as `router classifier evaluate --cv K --scores-out` also writes), floored at 0.
    """
    path = Path(path)
    found: dict[str, float] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(
            f"{path}: cannot be read ({error.strerror}); check the --scores path."
        ) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row_id, value = str(row["id"]), row[key]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(
                f"{path} line {number}: expected a JSON object with 'id' and '{key}', as "
                "`router classifier score` (difficulty) or `router classifier evaluate --cv K --scores-out` "
                "(difficulty and gain) write."
            ) from None
        low = -1.0 if key == "gain" else 0.0
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= 1.0:
            raise DataError(f"{path} line {number}: {key} must be a number in [{low:g}, 1], got {value!r}.")
        found[row_id] = max(float(value), 0.0)
    missing = [r.id for r in records if r.id not in found]
    if missing:
        raise DataError(
            f"{path} has no difficulty for {len(missing)} of {len(records)} records (first: "
            f"{', '.join(missing[:3])}); score the same data file with `router classifier score`."
        )
    return np.array([found[r.id] for r in records], dtype=np.float64)


def _result(
    name: str,
    *,
    matrix: OutcomeMatrix,
    accuracy: float,
    total: float,
    correct: float,
    shares: NDArray[np.float64],
    strongest_accuracy: float | None,
) -> RouterResult:
    return RouterResult(
        name=name,
        accuracy=accuracy,
        total_cost_usd=total,
        cost_per_1k_usd=total / matrix.size * 1000.0,
        cost_per_correct_usd=cost_per_correct(total, correct),
        quality=ratio(accuracy, strongest_accuracy or 0.0),
        shares={tier: float(share) for tier, share in zip(matrix.tiers, shares, strict=True)},
    )
