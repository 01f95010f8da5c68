"""The scikit-learn-style contract of DifficultyClassifier."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.estimator import DifficultyClassifier, top_k
from classifiers.metrics import safe_auc
from core.errors import ConfigError, NotFittedError
from tests.conftest import HashEncoder, synthetic_outcomes


def _data() -> tuple[list[str], np.ndarray]:
    rows = synthetic_outcomes(repeats=3)
    texts = [str(row["prompt"]) for row in rows]
    targets = np.array([[float(o["correct"]) for o in row["outcomes"].values()] for row in rows])  # type: ignore[union-attr]
    return texts, targets


@pytest.mark.parametrize("kind", ["logreg", "knn", "ensemble"])
def test_fit_returns_self_and_predicts_probabilities(kind: str, hash_encoder: HashEncoder) -> None:
    texts, targets = _data()
    clf = DifficultyClassifier(hash_encoder, model=kind, n_neighbors=5)
    assert clf.fit(texts, targets, ["weak", "strong"]) is clf
    proba = clf.predict_proba(texts)
    assert proba.shape == (len(texts), 2)
    assert np.all((proba >= 0) & (proba <= 1))
    difficulty = clf.predict_difficulty(["What is the capital city of Peru?", "Prove a deep theorem about sheaves"])
    assert difficulty.shape == (2,)
    assert difficulty[0] < difficulty[1]
    assert safe_auc(1 - targets[:, 0], clf.predict_difficulty(texts)) > 0.95


def test_unfitted_model_says_to_call_fit(hash_encoder: HashEncoder) -> None:
    with pytest.raises(NotFittedError, match="call fit"):
        DifficultyClassifier(hash_encoder).predict_difficulty(["x"])


@pytest.mark.parametrize(
    ("params", "message"),
    [({"model": "svm"}, "model must be one of"), ({"C": 0.0}, "C must be > 0"), ({"n_neighbors": 0}, "n_neighbors")],
)
def test_parameters_are_validated_in_fit(params: dict[str, object], message: str, hash_encoder: HashEncoder) -> None:
    clf = DifficultyClassifier(hash_encoder, **params)  # type: ignore[arg-type]
    texts, targets = _data()
    with pytest.raises(ConfigError, match=message):
        clf.fit(texts, targets)


def test_targets_outside_unit_interval_are_rejected(hash_encoder: HashEncoder) -> None:
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        DifficultyClassifier(hash_encoder).fit(["a", "b"], np.array([[0.0], [2.0]]))


def test_soft_labels_move_probabilities(hash_encoder: HashEncoder) -> None:
    texts = ["alpha beta"] * 10 + ["gamma delta"] * 10
    targets = np.array([[0.9]] * 10 + [[0.1]] * 10)
    clf = DifficultyClassifier(hash_encoder, model="logreg", C=100.0).fit(texts, targets)
    proba = clf.predict_proba(["alpha beta", "gamma delta"])[:, 0]
    assert proba[0] == pytest.approx(0.9, abs=0.05)
    assert proba[1] == pytest.approx(0.1, abs=0.05)


def test_single_class_tier_gives_constant(hash_encoder: HashEncoder) -> None:
    texts, targets = _data()
    targets[:, 1] = 1.0
    clf = DifficultyClassifier(hash_encoder, model="logreg").fit(texts, targets)
    assert np.all(clf.predict_proba(texts)[:, 1] == 1.0)


def test_embedding_width_mismatch_is_clear(hash_encoder: HashEncoder) -> None:
    texts, targets = _data()
    clf = DifficultyClassifier(hash_encoder, model="logreg").fit(texts, targets)
    with pytest.raises(ConfigError, match="trained on width 32"):
        clf.predict_proba_embeddings(np.zeros((1, 8)))


@pytest.mark.parametrize(("n", "k"), [(13_265, 100), (5_000, 7), (400, 100), (150, 100), (100, 100), (30, 1)])
def test_top_k_selects_what_a_full_partition_selects(n: int, k: int) -> None:
    values = np.random.default_rng(n + k).normal(size=(40, n)).astype(np.float32)
    expected = np.sort(np.argpartition(values, n - k, axis=1)[:, n - k :], axis=1)
    np.testing.assert_array_equal(np.sort(top_k(values, k), axis=1), expected)


def test_top_k_falls_back_when_the_sample_holds_the_top() -> None:
    # The sampled columns hold the largest values: the sample's threshold lets fewer than k through.
    values = np.zeros((1, 4_000), dtype=np.float32)
    values[0, ::16] = 1_000.0 + np.arange(250)
    expected = np.arange(0, 4_000, 16)[-100:]
    np.testing.assert_array_equal(np.sort(top_k(values, 100)[0]), expected)
