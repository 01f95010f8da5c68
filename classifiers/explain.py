"""Why a prompt got its score: the nearest training prompts and how each tier did on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from classifiers.estimator import DifficultyClassifier
from core.errors import ClassifierError


@dataclass(frozen=True)
class Neighbour:
    """One similar training example."""

    id: str
    source: str
    similarity: float
    success: dict[str, float]


@dataclass(frozen=True)
class Explanation:
    """A prompt's difficulty, per-tier success probabilities and nearest training examples."""

    text: str
    difficulty: float
    success: dict[str, float]
    neighbours: list[Neighbour]


def explain(classifier: DifficultyClassifier, text: str, k: int = 5) -> Explanation:
    """Score `text` and list its k nearest training examples (needs a kNN or ensemble model)."""
    if not text.strip():
        raise ClassifierError("The text to explain is empty; pass the prompt in quotes.")
    if classifier.encoder is None:
        raise ClassifierError("The classifier has no encoder attached; load it with load_classifier().")
    embedding = classifier.encoder.encode([text])
    proba = classifier.predict_proba_embeddings(embedding)[0]
    success = {tier: float(p) for tier, p in zip(classifier.tiers_, proba, strict=True)}
    neighbours: list[Neighbour] = []
    if classifier.knn_ is None:
        raise ClassifierError(
            f"This classifier (model={classifier.model}) keeps no training examples to compare with. "
            "Train with --model ensemble or --model knn to get explanations."
        )
    index, similarity = classifier.knn_.neighbours(embedding, k)
    ids = classifier.neighbour_ids_
    sources = classifier.neighbour_sources_
    for row, sim in zip(index[0], similarity[0], strict=True):
        targets = classifier.knn_.targets_[row]
        neighbours.append(
            Neighbour(
                id=ids[row] if ids else f"#{row}",
                source=sources[row] if sources else "",
                similarity=float(sim),
                success={tier: float(v) for tier, v in zip(classifier.tiers_, np.atleast_1d(targets), strict=True)},
            )
        )
    return Explanation(text, 1.0 - float(proba[0]), success, neighbours)
