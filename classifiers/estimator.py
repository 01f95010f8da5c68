"""The difficulty classifier: a scikit-learn-style estimator over sentence embeddings.

One probabilistic model per tier predicts P(tier answers correctly | prompt). Difficulty is
1 - P(cheapest tier correct). Models:
  - `logreg`: L2 logistic regression on the embedding (soft labels via weighted duplication);
  - `knn`: mean outcome of the k most similar training prompts (cosine), shrunk toward the prior;
    with `knn_dims`, similarity is measured in the training vectors' first `knn_dims` principal
    components (unsupervised: it uses no outcome), which reads a sixth of the memory per query at
    64 of 384 dimensions with the same routing quality on RouteLLM's data (bench/routing_quality.py);
  - `ensemble`: the average of the two, which is what cross-validation picked on RouteLLM's data.
`model="auto"` picks among candidates by cross-validation (see classifiers.selection).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import ThreadpoolController

from classifiers.encoders import TextEncoder
from core.errors import ConfigError, NotFittedError

MODEL_KINDS = ("logreg", "knn", "ensemble")
_SMALL_BATCH = 64


class KnnScorer:
    """Similarity-weighted mean outcome of the k nearest prompts, with a Bayesian prior of `prior_weight`.

    With `dims`, vectors are centred and projected on the training vectors' first `dims`
    principal components before the cosine: the query's cost is one product with the index,
    which is memory-bound, so it shrinks with the index's width.
    """

    center_: np.ndarray | None = None
    projection_: np.ndarray | None = None

    def __init__(self, n_neighbors: int, prior_weight: float = 2.0, dims: int | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.prior_weight = prior_weight
        self.dims = dims

    def fit(self, embeddings: np.ndarray, targets: np.ndarray) -> KnnScorer:
        """Keep the (projected, normalised) training vectors and their per-tier targets."""
        self.center_, self.projection_ = None, None
        if self.dims is not None and self.dims < min(embeddings.shape):
            center = embeddings.mean(axis=0)
            _, _, components = np.linalg.svd(embeddings - center, full_matrices=False)
            self.center_, self.projection_ = center.astype(np.float32), components[: self.dims].T.astype(np.float32)
        return self.restore(embeddings if self.projection_ is None else self.project(embeddings), targets)

    def restore(
        self, index: np.ndarray, targets: np.ndarray, center: np.ndarray | None = None, projection: np.ndarray | None = None
    ) -> KnnScorer:
        """Set the fitted state from saved arrays: `index` already projected when `projection` is given."""
        if projection is not None:
            self.center_, self.projection_ = np.asarray(center, dtype=np.float32), np.asarray(projection, dtype=np.float32)
        self.index_ = _normalise(np.asarray(index, dtype=np.float32))
        self.targets_ = targets.astype(np.float64)
        self.prior_ = targets.mean(axis=0)
        return self

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Vectors in the space the index compares in (unchanged without a projection)."""
        if self.projection_ is None or self.center_ is None:
            return embeddings
        return np.asarray((embeddings - self.center_) @ self.projection_, dtype=np.float32)

    def neighbours(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine similarities of the k nearest training rows, most similar first."""
        top, top_similarity = self._nearest(embeddings, k)
        order = np.argsort(-top_similarity, axis=1)
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_similarity, order, axis=1)

    def _nearest(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest training rows' indices and cosine similarities, in no order (a vote needs none)."""
        k = min(k, len(self.index_))
        similarity = _normalise(self.project(embeddings)).astype(np.float32) @ self.index_.T
        top = top_k(similarity, k)
        return top, np.take_along_axis(similarity, top, axis=1)

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Per-tier success probability for each row."""
        out = np.empty((len(embeddings), self.targets_.shape[1]))
        for start in range(0, len(embeddings), 1024):  # bound the similarity matrix's memory
            chunk = embeddings[start : start + 1024]
            index, similarity = self._nearest(chunk, self.n_neighbors)
            weight = np.clip(similarity, 1e-3, None)[..., None]
            votes = (self.targets_[index] * weight).sum(axis=1)
            out[start : start + len(chunk)] = (votes + self.prior_weight * self.prior_) / (
                weight.sum(axis=1) + self.prior_weight
            )
        return out


def top_k(values: np.ndarray, k: int, sample_step: int = 16) -> np.ndarray:
    """Column indices of each row's `k` largest values, in no order: the same set as a full
    `argpartition` (up to ties at the k-th value), at a fraction of its cost on long rows.

    Selecting among 13,265 similarities took 0.18 ms a row, three times the product that made
    them. A strided sample's high quantile gives a threshold that about 2k values reach; when at
    least k reach it, the k largest are all among them, so only those are partitioned. A row where
    fewer than k do (a rare sample) takes the full partition.
    """
    n = values.shape[1]
    if k >= n:
        return np.tile(np.arange(n), (len(values), 1))
    sample = values[:, ::sample_step]
    rank = 2 * k // sample_step  # the sample's rank whose value about 2k of the row reach
    if not 1 <= rank < sample.shape[1] or n < 4 * k:
        return np.argpartition(values, n - k, axis=1)[:, n - k :]
    threshold = np.partition(sample, sample.shape[1] - rank, axis=1)[:, sample.shape[1] - rank]
    out = np.empty((len(values), k), dtype=np.intp)
    for row, (line, limit) in enumerate(zip(values, threshold, strict=True)):
        candidates = np.flatnonzero(line >= limit)
        if len(candidates) < k:
            out[row] = np.argpartition(line, n - k)[n - k :]
        else:
            out[row] = candidates[np.argpartition(line[candidates], len(candidates) - k)[len(candidates) - k :]]
    return out


class DifficultyClassifier:
    """Predicts how hard a prompt is for the cheapest tier, and each tier's chance of success.

    Parameters are stored as given and validated in `fit`, as in scikit-learn.
    """

    # Set by fit / loading; declared so readers know the fitted state.
    tiers_: list[str]
    n_features_in_: int
    linear_: list[tuple[np.ndarray, float] | float]
    knn_: KnnScorer | None
    neighbour_ids_: list[str] | None = None
    neighbour_sources_: list[str] | None = None
    info_: Any = None
    path_: Any = None

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        *,
        model: str = "ensemble",
        C: float = 1.0,
        n_neighbors: int = 100,
        knn_dims: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.encoder = encoder
        self.model = model
        self.C = C
        self.n_neighbors = n_neighbors
        self.knn_dims = knn_dims
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters (not the encoder), as scikit-learn's get_params."""
        return {
            "model": self.model, "C": self.C, "n_neighbors": self.n_neighbors, "knn_dims": self.knn_dims,
            "random_state": self.random_state,
        }

    def fit(self, texts: Sequence[str], targets: np.ndarray, tiers: Sequence[str] | None = None) -> DifficultyClassifier:
        """Embed `texts` and fit; `targets` is (n, n_tiers) success in [0, 1], cheapest tier first."""
        return self.fit_embeddings(self._require_encoder().encode(texts), targets, tiers)

    def fit_embeddings(
        self, embeddings: np.ndarray, targets: np.ndarray, tiers: Sequence[str] | None = None
    ) -> DifficultyClassifier:
        """Fit on precomputed embeddings (used by cross-validation to embed once)."""
        self._validate_params()
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim == 1:
            targets = targets[:, None]
        if len(embeddings) != len(targets):
            raise ConfigError(f"Got {len(embeddings)} embeddings but {len(targets)} target rows; they must match.")
        if len(targets) < 2:
            raise ConfigError("Training needs at least 2 rows.")
        if np.any((targets < 0) | (targets > 1)) or np.isnan(targets).any():
            raise ConfigError("Targets must be success probabilities in [0, 1].")
        self.tiers_ = list(tiers) if tiers is not None else [f"tier{j}" for j in range(targets.shape[1])]
        if len(self.tiers_) != targets.shape[1]:
            raise ConfigError(f"{len(self.tiers_)} tier names for {targets.shape[1]} target columns.")
        self.n_features_in_ = embeddings.shape[1]
        self.linear_ = []
        if self.model in ("logreg", "ensemble"):
            self.linear_ = [self._fit_linear(embeddings, targets[:, j]) for j in range(targets.shape[1])]
        self.knn_ = None
        if self.model in ("knn", "ensemble"):
            self.knn_ = KnnScorer(self.n_neighbors, dims=self.knn_dims).fit(embeddings, targets)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Success probability per tier, shape (n, n_tiers)."""
        self._check_is_fitted()
        return self.predict_proba_embeddings(self._require_encoder().encode(texts))

    def predict_difficulty(self, texts: Sequence[str]) -> np.ndarray:
        """Difficulty in [0, 1]: the probability that the cheapest tier answers incorrectly."""
        return 1.0 - self.predict_proba(texts)[:, 0]

    def predict_gain(self, texts: Sequence[str]) -> np.ndarray:
        """Routing score in [-1, 1]: P(strongest tier correct) - P(cheapest tier correct).

        Ranking by this gain instead of by difficulty keeps prompts that every tier fails on the
        cheap tier, which is where cost per correct answer is won (see data/README.md).
        """
        proba = self.predict_proba(texts)
        return np.asarray(proba[:, -1] - proba[:, 0], dtype=float)

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        """The score a policy routes on, in [0, 1]: `difficulty`, or `gain` floored at 0."""
        if score == "difficulty":
            return self.predict_difficulty(texts)
        if score == "gain":
            return np.asarray(np.clip(self.predict_gain(texts), 0.0, 1.0), dtype=float)
        raise ConfigError(f"score must be 'difficulty' or 'gain'; got {score!r}.")

    def predict_proba_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Success probability per tier from precomputed embeddings."""
        self._check_is_fitted()
        if embeddings.ndim != 2 or embeddings.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"Embeddings have shape {embeddings.shape}; this classifier was trained on width "
                f"{self.n_features_in_}. Use the embedding model it was trained with."
            )
        if len(embeddings) <= _SMALL_BATCH and not _one_blas_thread.is_set():
            # Right after torch encodes, its OpenMP threads still spin; a multi-threaded BLAS call then
            # fights them and a 1 ms product takes 30 ms. One BLAS thread is faster for small batches.
            with _blas_controller().limit(limits=1, user_api="blas"):
                return self._combine(embeddings)
        return self._combine(embeddings)

    def _combine(self, embeddings: np.ndarray) -> np.ndarray:
        parts = []
        if self.linear_:
            parts.append(np.column_stack([_linear_proba(model, embeddings) for model in self.linear_]))
        if self.knn_ is not None:
            parts.append(self.knn_.predict(embeddings))
        return np.asarray(np.clip(np.mean(parts, axis=0), 0.0, 1.0), dtype=float)

    def _fit_linear(self, embeddings: np.ndarray, success: np.ndarray) -> tuple[np.ndarray, float] | float:
        if np.all(success == success[0]) and success[0] in (0.0, 1.0):
            return float(success[0])  # one class only: a constant model
        # Soft labels: each row appears once as success (weight p) and once as failure (weight 1 - p).
        x = np.vstack([embeddings, embeddings])
        y = np.concatenate([np.ones(len(success)), np.zeros(len(success))])
        weight = np.concatenate([success, 1.0 - success])
        keep = weight > 0
        model = LogisticRegression(C=self.C, max_iter=2000, random_state=self.random_state)
        model.fit(x[keep], y[keep], sample_weight=weight[keep])
        return model.coef_[0].astype(np.float64), float(model.intercept_[0])

    def _validate_params(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ConfigError(f"model must be one of {', '.join(MODEL_KINDS)}; got {self.model!r}.")
        if not self.C > 0:
            raise ConfigError(f"C must be > 0; got {self.C}.")
        if not (isinstance(self.n_neighbors, int) and self.n_neighbors >= 1):
            raise ConfigError(f"n_neighbors must be an integer >= 1; got {self.n_neighbors!r}.")
        if self.knn_dims is not None and not (isinstance(self.knn_dims, int) and self.knn_dims >= 1):
            raise ConfigError(f"knn_dims must be an integer >= 1, or None for the full width; got {self.knn_dims!r}.")

    def _require_encoder(self) -> TextEncoder:
        if self.encoder is None:
            raise ConfigError("This classifier has no text encoder; pass encoder= or use *_embeddings methods.")
        return self.encoder

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "tiers_"):
            raise NotFittedError("This DifficultyClassifier is not fitted yet: call fit() or load a saved one.")


_one_blas_thread = threading.Event()


def use_one_blas_thread() -> None:
    """Limit BLAS to one thread for the whole process, once: then small batches skip the per-call
    limit (0.15 ms a prediction, half the classifier's own time on the proxy's encoder)."""
    if not _one_blas_thread.is_set():
        _blas_controller().limit(limits=1, user_api="blas")
        _one_blas_thread.set()


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """One controller per process: building it scans the loaded libraries, which takes milliseconds."""
    return ThreadpoolController()


def _linear_proba(model: tuple[np.ndarray, float] | float, embeddings: np.ndarray) -> np.ndarray:
    if isinstance(model, float):
        return np.full(len(embeddings), model)
    coef, intercept = model
    return np.asarray(1.0 / (1.0 + np.exp(-(embeddings @ coef + intercept))), dtype=float)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
