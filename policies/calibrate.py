"""Choose the difficulty thresholds that meet a quality target at the lowest cost, or the best
accuracy under a cost cap, and write them back into router.yaml without touching anything else.

Candidate thresholds are quantiles of the records' difficulty scores (as RouteLLM's
calibrate_threshold does), rounded to 4 decimals; each candidate is simulated exactly through the
policy's own rules. With two bands that is a 1-D sweep over 101 quantiles; with more bands, every
ascending combination of a coarser quantile grid (at most a few thousand candidates).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from classifiers.records import OutcomeRecord
from policies.loader import compose_yaml, node_at, parse_policy
from policies.policy import Policy
from policies.simulate import OutcomeMatrix, build_matrix, evaluate, extreme_rows, route
from core.errors import ConfigError, PolicyError

# Quantile grid steps by number of thresholds: keeps the sweep to a few thousand candidates.
GRID_STEPS = {1: 100, 2: 40, 3: 20}
DEFAULT_GRID_STEPS = 10
DECIMALS = 4
_EPS = 1e-9


@dataclass(frozen=True)
class CurvePoint:
    """One candidate set of thresholds and what it does on the data."""

    thresholds: tuple[float, ...]
    strong_share: float
    accuracy: float
    quality: float | None
    cost_per_1k_usd: float
    cost_per_correct_usd: float | None
    total_cost_usd: float


@dataclass(frozen=True)
class Calibration:
    """Every candidate (cheapest first), the chosen one, and the policy as it stands."""

    band_rules: tuple[str, ...]
    curve: tuple[CurvePoint, ...]
    chosen: CurvePoint
    current: CurvePoint
    strongest_accuracy: float

    def frontier(self, max_points: int = 25) -> tuple[CurvePoint, ...]:
        """The cost/accuracy trade-off: candidates no cheaper one beats, thinned, the chosen kept."""
        best = -np.inf
        efficient = []
        for point in self.curve:  # cheapest first
            if point.accuracy > best + _EPS:
                efficient.append(point)
                best = point.accuracy
        if len(efficient) > max_points:
            keep = np.unique(np.linspace(0, len(efficient) - 1, max_points).round().astype(int))
            efficient = [efficient[i] for i in keep]
        if self.chosen not in efficient:
            efficient.append(self.chosen)
            efficient.sort(key=lambda p: (p.total_cost_usd, -p.accuracy))
        return tuple(efficient)


def candidate_thresholds(
    difficulties: NDArray[np.float64], steps: int = GRID_STEPS[1]
) -> list[float]:
    """Score quantiles at 0, 1/steps, ..., 1, rounded, kept inside (0, 1), plus 'nothing above'."""
    quantiles = np.quantile(difficulties, np.linspace(0.0, 1.0, steps + 1), method="lower")
    top = float(difficulties.max()) + 10.0**-DECIMALS  # a threshold above every score
    values = np.round(np.append(quantiles, top), DECIMALS)
    low, high = 10.0**-DECIMALS, 1.0 - 10.0**-DECIMALS
    return sorted({float(v) for v in np.clip(values, low, high)})


def calibrate(
    records: Sequence[OutcomeRecord],
    difficulties: NDArray[np.float64],
    policy: Policy,
    mapping: Mapping[str, str],
    *,
    target_quality: float | None = None,
    max_cost_per_1k: float | None = None,
) -> Calibration:
    """Sweep the band thresholds; pick the cheapest meeting `target_quality` or the most accurate
    within `max_cost_per_1k` (give exactly one)."""
    if (target_quality is None) == (max_cost_per_1k is None):
        raise ConfigError("Give exactly one of --target-quality or --max-cost-per-1k.")
    if target_quality is not None and target_quality <= 0:
        raise ConfigError(f"--target-quality must be > 0 (e.g. 0.95), got {target_quality}.")
    if max_cost_per_1k is not None and max_cost_per_1k < 0:
        raise ConfigError(f"--max-cost-per-1k must be >= 0, got {max_cost_per_1k}.")
    count = len(policy.thresholds)
    if count == 0:
        raise ConfigError(
            f"{policy.source} has fewer than two difficulty-only rules, so there is no threshold to "
            "calibrate; split the difficulty range into bands (see docs/policy.md)."
        )
    matrix = build_matrix(records, policy, mapping)
    _, strongest = extreme_rows(matrix)
    strong_accuracy = float(matrix.scores[strongest].mean())
    grid = candidate_thresholds(difficulties, GRID_STEPS.get(count, DEFAULT_GRID_STEPS))
    points = [
        _point(policy.with_thresholds(combo), matrix, difficulties, strongest, strong_accuracy)
        for combo in itertools.combinations(grid, count)
    ]
    points.sort(key=lambda p: (p.total_cost_usd, -p.accuracy, p.thresholds))
    current = _point(policy, matrix, difficulties, strongest, strong_accuracy)
    if target_quality is not None:
        feasible = [
            p for p in points if p.quality is not None and p.quality >= target_quality - _EPS
        ]
        if not feasible:
            top = max(points, key=lambda p: p.accuracy)
            raise ConfigError(
                f"No thresholds reach {target_quality:.1%} of always-strongest accuracy "
                f"({strong_accuracy:.4f}); the best reaches {top.quality or 0:.1%}. Lower "
                "--target-quality or route more of the bands to a stronger tier."
            )
        chosen = feasible[0]  # cheapest, then most accurate
    else:
        cap = max_cost_per_1k or 0.0
        feasible = [p for p in points if p.cost_per_1k_usd <= cap + _EPS]
        if not feasible:
            raise ConfigError(
                f"No thresholds cost at most ${cap:g} per 1k queries; the cheapest "
                f"costs ${points[0].cost_per_1k_usd:.4f}. Raise --max-cost-per-1k."
            )
        chosen = max(feasible, key=lambda p: (p.accuracy, -p.total_cost_usd))
    return Calibration(policy.band_rules, tuple(points), chosen, current, strong_accuracy)


def write_thresholds(path: str | Path, thresholds: Sequence[float]) -> Policy:
    """Replace only the band edges in the policy file, byte for byte elsewhere; return the new policy."""
    path = Path(path)
    text = path.read_bytes().decode("utf-8")
    policy = parse_policy(text, source=str(path))
    if len(thresholds) != len(policy.thresholds):
        raise ConfigError(
            f"{path} has {len(policy.thresholds)} thresholds, not {len(thresholds)}; calibrate it again."
        )
    root = compose_yaml(text, str(path))
    index = {rule.name: i for i, rule in enumerate(policy.config.rules)}
    edits: list[tuple[int, int, str]] = []
    for position, name in enumerate(policy.band_rules):
        band_loc = ("rules", index[name], "when", "difficulty")
        ends = []
        if position > 0:
            ends.append(("min", thresholds[position - 1]))
        if position < len(thresholds):
            ends.append(("max", thresholds[position]))
        for key, value in ends:
            node = node_at(root, (*band_loc, key))
            if node is None:  # interior edges differ from the 0/1 defaults, so they are written
                raise ConfigError(
                    f"{path}: rule '{name}' has no explicit difficulty {key} to update."
                )
            edits.append((node.start_mark.index, node.end_mark.index, format_threshold(value)))
    for start, end, written in sorted(edits, reverse=True):
        text = text[:start] + written + text[end:]
    try:
        new = parse_policy(text, source=str(path))
    except PolicyError as error:
        raise ConfigError(
            f"{path}: the calibrated thresholds do not validate, file left as it was:\n{error}"
        ) from None
    _replace_file(path, text)
    return new


def format_threshold(value: float) -> str:
    """A threshold as written into YAML: at most 4 decimals, no trailing zeros."""
    return f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".") or "0"


def _point(
    policy: Policy,
    matrix: OutcomeMatrix,
    difficulties: NDArray[np.float64],
    strongest: int,
    strong_accuracy: float,
) -> CurvePoint:
    result = evaluate("candidate", matrix, route(policy, matrix, difficulties), strong_accuracy)
    return CurvePoint(
        thresholds=policy.thresholds,
        strong_share=result.shares[matrix.tiers[strongest]],
        accuracy=result.accuracy,
        quality=result.quality,
        cost_per_1k_usd=result.cost_per_1k_usd,
        cost_per_correct_usd=result.cost_per_correct_usd,
        total_cost_usd=result.total_cost_usd,
    )


def _replace_file(path: Path, text: str) -> None:
    """Write atomically, so a watching proxy never reads half a file."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise ConfigError(
            f"{path}: cannot be written ({error.strerror}); check its permissions."
        ) from None
