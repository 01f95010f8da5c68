"""A two-stage score: a static-embedding classifier answers alone where it cannot change a decision.

The policy turns a score into a tier by comparing it with its thresholds ("cuts"). Where the
first stage's score is farther than a margin from every cut, it decides alone; only texts near a
cut pay for the transformer. Each cut gets its own margin, calibrated on out-of-fold scores of
both stages for the same texts (shipped beside the first stage): the smallest margin at which the
first stage, deciding alone beyond it, decides differently from the transformer on at most
`disagreement` of all texts (`calibrate_margin`). With several cuts the bound adds up per cut.

The classifier layer does not know policies: the caller passes the live policy's cuts down. A
first-stage folder is an ordinary classifier artifact on a static encoder plus
`two_stage.npz` (the out-of-fold scores, one float32 array per stage and score kind:
`first_difficulty`, `second_difficulty`, `first_gain`, `second_gain`) and `two_stage.json`:

    {"second_stage": {"embedding_model": "...", "data_sha256": "..."}, "command": "..."}

naming the transformer classifier it was calibrated against.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import ArtifactError, ConfigError

TWO_STAGE_FILE = "two_stage.json"
SCORE_KINDS = ("difficulty", "gain")


class ScoringClassifier(Protocol):
    """What a stage needs of a classifier: a score in [0, 1] per text (DifficultyClassifier)."""

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        """Scores for `texts`."""
        ...


def calibrate_margin(first: np.ndarray, second: np.ndarray, cut: float, disagreement: float) -> float:
    """The smallest margin beyond which `first` decides differently from `second` at `cut` on at most
    `disagreement` of the texts (out-of-fold scores of the same texts); 0 when it never does."""
    if not 0.0 <= disagreement < 1.0:
        raise ConfigError(f"disagreement must be in [0, 1); got {disagreement}.")
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape != second.shape or first.ndim != 1 or first.size == 0:
        raise ConfigError(f"Calibration needs both stages' scores of the same texts; got {first.shape} and {second.shape}.")
    distance = np.abs(first - cut)
    order = np.argsort(-distance, kind="stable")
    differs = ((first >= cut) != (second >= cut))[order]
    over = np.flatnonzero(np.cumsum(differs) > disagreement * len(first))
    # Deciding the farthest texts first, the first one past the allowance marks the margin.
    return float(distance[order][over[0]]) if len(over) else 0.0


def decided_by_first(first: np.ndarray, cuts: Sequence[float], margins: Sequence[float]) -> np.ndarray:
    """True where a first-stage score is farther than its margin from every cut (no cuts: everywhere)."""
    first = np.asarray(first, dtype=float)
    decided = np.ones(first.shape, dtype=bool)
    for cut, margin in zip(cuts, margins, strict=True):
        decided &= np.abs(first - cut) > margin
    return decided


@dataclass(frozen=True)
class Calibration:
    """Out-of-fold scores of both stages per score kind, from which margins are calibrated for any cuts."""

    first: Mapping[str, np.ndarray]
    second: Mapping[str, np.ndarray]

    def margins(self, kind: str, cuts: Sequence[float], disagreement: float) -> tuple[float, ...]:
        """One margin per cut for score `kind`."""
        if kind not in self.first or kind not in self.second:
            raise ConfigError(f"score must be one of {', '.join(sorted(self.first))}; got {kind!r}.")
        return tuple(calibrate_margin(self.first[kind], self.second[kind], cut, disagreement) for cut in cuts)


@dataclass
class StageCounts:
    """How many texts each stage scored (for /metrics and benchmarks)."""

    first: int = 0
    second: int = 0


@dataclass
class TwoStageClassifier:
    """Scores with `first`, and with `second` where the first score lies within a cut's margin."""

    first: ScoringClassifier
    second: ScoringClassifier
    calibration: Calibration
    disagreement: float = 0.005  # router.yaml's default (classifier.first_stage.disagreement)
    counts: StageCounts = field(default_factory=StageCounts)
    _margins: dict[tuple[str, tuple[float, ...]], tuple[float, ...]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def margins(self, score: str, cuts: Sequence[float]) -> tuple[float, ...]:
        """The margins at `cuts`, calibrated once per (score, cuts): a policy reload with new thresholds recalibrates."""
        key = (score, tuple(float(cut) for cut in cuts))
        found = self._margins.get(key)
        if found is None:
            found = self.calibration.margins(score, key[1], self.disagreement)
            with self._lock:
                self._margins[key] = found
        return found

    def first_stage(self, texts: Sequence[str], score: str, cuts: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """The first stage's scores, and where they decide alone at `cuts` (counted as the first stage's)."""
        scores = np.asarray(self.first.predict_score(texts, score), dtype=float)
        alone = decided_by_first(scores, cuts, self.margins(score, cuts)) if len(cuts) else np.zeros(len(texts), bool)
        self.counts.first += int(alone.sum())
        return scores, alone

    def second_stage(self, texts: Sequence[str], score: str) -> np.ndarray:
        """The transformer's scores (counted as the second stage's)."""
        self.counts.second += len(texts)
        return np.asarray(self.second.predict_score(texts, score), dtype=float)

    def predict_score(self, texts: Sequence[str], score: str = "difficulty", cuts: Sequence[float] = ()) -> np.ndarray:
        """Per text, the first stage's score where it decides alone at `cuts`, else the second stage's.

        With no cuts (a policy without difficulty rules) every score is the second stage's: a caller
        that does not say where decisions change gets the transformer's scores.
        """
        if not len(cuts):
            return self.second_stage(texts, score)
        scores, alone = self.first_stage(texts, score, cuts)
        near = np.flatnonzero(~alone)
        if len(near):
            scores[near] = self.second_stage([texts[int(i)] for i in near], score)
        return scores


CALIBRATION_FILE = "two_stage.npz"


@dataclass(frozen=True)
class TwoStageInfo:
    """What a first-stage folder says about its calibration: the scores and the transformer classifier."""

    calibration: Calibration
    second_stage: dict[str, str]
    raw: dict[str, Any]


def read_two_stage(folder: Path) -> TwoStageInfo:
    """Read and check `two_stage.json` and `two_stage.npz` of a first-stage classifier folder."""
    path = folder / TWO_STAGE_FILE
    hint = "build one with `python bench/two_stage.py --write DIR`"
    try:
        raw = json.loads(path.read_text())
        second_stage = {str(k): str(v) for k, v in raw["second_stage"].items()}
        with np.load(folder / CALIBRATION_FILE, allow_pickle=False) as saved:
            arrays = {name: np.asarray(saved[name], dtype=np.float64) for name in saved.files}
    except FileNotFoundError as error:
        raise ArtifactError(f"{folder} is no first-stage classifier: {error.filename} is missing; {hint}.") from error
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, OSError) as error:
        raise ArtifactError(f"{path} or {CALIBRATION_FILE} is unreadable or lacks a field ({error}); {hint}.") from error
    kinds = [kind for kind in SCORE_KINDS if f"first_{kind}" in arrays and f"second_{kind}" in arrays]
    shapes = {arrays[f"{stage}_{kind}"].shape for kind in kinds for stage in ("first", "second")}
    if not kinds or len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ArtifactError(f"{folder / CALIBRATION_FILE} needs first_<kind> and second_<kind> arrays of one length; {hint}.")
    calibration = Calibration({k: arrays[f"first_{k}"] for k in kinds}, {k: arrays[f"second_{k}"] for k in kinds})
    return TwoStageInfo(calibration, second_stage, raw)


def write_two_stage(folder: Path, first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray],
                    second_stage: Mapping[str, str], **extra: Any) -> None:
    """Write `two_stage.json` and `two_stage.npz` beside a first-stage classifier."""
    arrays = {f"{stage}_{kind}": np.asarray(scores[kind], dtype=np.float32)
              for stage, scores in (("first", first), ("second", second)) for kind in scores}
    np.savez_compressed(folder / CALIBRATION_FILE, **arrays)  # type: ignore[arg-type]
    (folder / TWO_STAGE_FILE).write_text(json.dumps({"second_stage": dict(second_stage), **extra}, indent=2) + "\n")


def load_first_stage(
    path: str | Path | None, second: ScoringClassifier, *, disagreement: float, setting: str = "classifier.first_stage.path"
) -> TwoStageClassifier:
    """The two-stage scorer of the first-stage folder at `path` (default: the shipped one) before `second`.

    The first stage's margins were calibrated against one transformer classifier; when `second` is
    a saved classifier (it has artifact info) and not that one, this refuses rather than let the
    first stage decide on a scale it was not calibrated for. `setting` names the option in errors.
    """
    from classifiers.estimator import DifficultyClassifier  # here: sklearn is not needed to read calibrations
    from classifiers.loading import artifact_info, load_classifier
    from classifiers.shipped import SHIPPED_FIRST_STAGE, shipped_path

    directory = Path(path) if path is not None else shipped_path(SHIPPED_FIRST_STAGE)
    if not directory.exists():
        raise ArtifactError(
            f"{setting}: no first-stage classifier at {directory}. Build one with "
            "`python bench/two_stage.py --write DIR`, or remove the setting for the shipped one."
        )
    two_stage = read_two_stage(directory)
    info = artifact_info(second) if isinstance(second, DifficultyClassifier) else None
    if info is not None:
        expected = two_stage.second_stage
        actual = {"embedding_model": info.embedding_model, "data_sha256": str(info.training.get("data_sha256", ""))}
        if any(expected.get(key) != value for key, value in actual.items()):
            raise ArtifactError(
                f"{setting}: the first stage at {directory} was calibrated against a classifier on "
                f"{expected.get('embedding_model')} trained on data {expected.get('data_sha256', '')[:12]}, but the policy's "
                f"classifier is on {actual['embedding_model']} trained on data {actual['data_sha256'][:12]}. "
                "Build a first stage for it with `python bench/two_stage.py --write DIR` and point the setting there."
            )
    first = load_classifier(directory)
    share_tokens(first, second)
    return TwoStageClassifier(first, second, two_stage.calibration, disagreement)


def share_tokens(first: ScoringClassifier, second: ScoringClassifier) -> bool:
    """Let the second stage's ONNX encoder reuse the first stage's tokens, where the two can share
    (classifiers.static_encoder.StaticEncoder.share_tokens); returns whether they do."""
    from classifiers.onnx_encoder import OnnxEncoder
    from classifiers.static_encoder import StaticEncoder

    static, onnx = getattr(first, "encoder", None), getattr(second, "encoder", None)
    return isinstance(static, StaticEncoder) and isinstance(onnx, OnnxEncoder) and static.share_tokens(onnx)
