"""Cross-validation: out-of-fold predictions, per-source metrics, and picking the model kind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedKFold

from classifiers.estimator import DifficultyClassifier
from classifiers.metrics import RoutingMetrics, routing_metrics, safe_auc
from core.errors import ConfigError

# The shipped classifier's parameters (cross-validation picked the ensemble on RouteLLM's data).
KNN_DIMS = 64
ENSEMBLE: dict[str, object] = {"model": "ensemble", "C": 1.0, "n_neighbors": 100, "knn_dims": KNN_DIMS}
CANDIDATES: tuple[dict[str, object], ...] = (
    {"model": "logreg", "C": 1.0},
    {"model": "knn", "n_neighbors": 100, "knn_dims": KNN_DIMS},
    ENSEMBLE,
)


@dataclass
class CrossValidation:
    """Out-of-fold success probabilities and the metrics computed from them."""

    params: dict[str, object]
    proba: np.ndarray
    overall: RoutingMetrics | None
    by_source: dict[str, RoutingMetrics] = field(default_factory=dict)
    auc: float | None = None

    @property
    def score(self) -> float | None:
        """The selection criterion: APGR (ranked by predicted gain) with two or more tiers, else AUC."""
        return self.overall.apgr if self.overall is not None else self.auc


def fold_labels(targets: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """Stratify folds by source group and by whether the cheapest tier failed."""
    groups = np.array([source.split("/", 1)[0] for source in sources])
    return np.char.add(groups, (targets[:, 0] < 0.5).astype(str))


def fold_splits(
    targets: np.ndarray, sources: Sequence[str], folds: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) row indices of each fold: every candidate cross-validated on them sees the same folds."""
    if folds < 2:
        raise ConfigError(f"--cv must be at least 2 folds; got {folds}.")
    strata = fold_labels(targets, sources)
    _, counts = np.unique(strata, return_counts=True)
    if counts.min() < folds:
        strata = (targets[:, 0] < 0.5).astype(str)  # small groups: stratify by outcome only
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(targets)), strata))


def grouped_fold_splits(
    targets: np.ndarray, sources: Sequence[str], folds: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds that hold out whole sources (e.g. MMLU subjects), to measure generalisation to new topics.

    A source with no subjects of its own (a group name without "/", e.g. gsm8k) cannot be held out
    by subject; each of its rows is a group of one, so its rows spread evenly over the folds.
    """
    from sklearn.model_selection import GroupKFold

    if folds < 2:
        raise ConfigError(f"--cv must be at least 2 folds; got {folds}.")
    groups = np.array([s if "/" in s else f"{s}#{row}" for row, s in enumerate(sources)])
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(targets)), groups=groups))


def out_of_fold_proba(
    params: dict[str, object],
    embeddings: np.ndarray,
    targets: np.ndarray,
    sources: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Each row's success probabilities from a model that never saw it (on `splits`, default fold_splits)."""
    proba = np.empty_like(targets, dtype=np.float64)
    for train, test in splits if splits is not None else fold_splits(targets, sources, folds, seed):
        model = DifficultyClassifier(**params).fit_embeddings(embeddings[train], targets[train])  # type: ignore[arg-type]
        proba[test] = model.predict_proba_embeddings(embeddings[test])
    return proba


def metrics_from_proba(
    params: dict[str, object], proba: np.ndarray, targets: np.ndarray, sources: Sequence[str]
) -> CrossValidation:
    """Overall and per-source-group metrics of (out-of-fold) predictions."""
    difficulty = 1.0 - proba[:, 0]
    if targets.shape[1] < 2:
        return CrossValidation(params, proba, None, auc=safe_auc(1.0 - targets[:, 0], difficulty))
    weak, strong = targets[:, 0], targets[:, -1]
    gain = proba[:, -1] - proba[:, 0]
    groups = np.array([source.split("/", 1)[0] for source in sources])
    by_source = {
        group: routing_metrics(difficulty[mask], weak[mask], strong[mask], gain[mask])
        for group in sorted(set(groups))
        for mask in [groups == group]
    }
    overall = routing_metrics(difficulty, weak, strong, gain)
    return CrossValidation(params, proba, overall, by_source, auc=overall.auc)


def select_model(
    embeddings: np.ndarray,
    targets: np.ndarray,
    sources: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    candidates: Sequence[dict[str, object]] = CANDIDATES,
) -> tuple[CrossValidation, list[CrossValidation]]:
    """Cross-validate each candidate and return the best (undefined scores last) with the whole table."""
    results = []
    for params in candidates:
        proba = out_of_fold_proba(params, embeddings, targets, sources, folds, seed)
        results.append(metrics_from_proba(dict(params), proba, targets, sources))
    best = max(results, key=lambda result: -np.inf if result.score is None else result.score)
    return best, results
