"""Request-time prompt features and the cross-validation folds every candidate shares."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.features import FEATURE_NAMES, FeatureScaler, prompt_features, source_onehot
from classifiers.selection import fold_splits, grouped_fold_splits, out_of_fold_proba
from core.errors import ConfigError, NotFittedError


def _column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_features_read_length_numbers_symbols_and_form() -> None:
    math, chat, choice = prompt_features([
        "Tom has 3 apples and buys 12 more at $2 each. How many dollars did he spend?",
        "hello there",
        "Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Earth\nAnswer:",
    ])
    assert math[_column("numbers")] == 3 and chat[_column("numbers")] == 0
    assert math[_column("currency_or_percent")] == 1
    assert math[_column("question_marks")] == 1 and chat[_column("question_marks")] == 0
    assert choice[_column("options")] == 4 and math[_column("options")] == 0
    assert choice[_column("starts_as_question")] == 1 and chat[_column("starts_as_question")] == 0
    assert chat[_column("words")] == 2 and chat[_column("chars")] == len("hello there")
    assert 0 < math[_column("digit_share")] < 0.1


def test_empty_prompt_has_finite_features() -> None:
    assert np.isfinite(prompt_features([""])).all()


def test_scaler_standardises_training_rows_and_needs_fit() -> None:
    raw = prompt_features(["a b c", "one two three four five six", "x = 2 + 2?", "Solve 3x + 4 = 10 for x."])
    with pytest.raises(NotFittedError, match="call fit"):
        FeatureScaler().transform(raw)
    scaled = FeatureScaler().fit(raw).transform(raw)
    assert scaled.shape == raw.shape
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-9)
    varying = raw.std(axis=0) > 0
    np.testing.assert_allclose(scaled.std(axis=0)[varying], 1.0, atol=1e-9)


def test_source_onehot_marks_known_groups_only() -> None:
    encoded = source_onehot(["mmlu/anatomy", "gsm8k", "new-tenant"], ["gsm8k", "mmlu"])
    np.testing.assert_array_equal(encoded, [[0, 1], [1, 0], [0, 0]])


def _sources() -> list[str]:
    return ["gsm8k"] * 40 + [f"mmlu/subject{i % 8}" for i in range(80)]


def test_fold_splits_partition_rows_and_match_out_of_fold() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((120, 2)) < 0.6).astype(float)
    splits = fold_splits(targets, _sources(), 5, seed=0)
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested.tolist()) == list(range(120))
    embeddings = rng.standard_normal((120, 8))
    params = {"model": "logreg", "C": 1.0}
    default = out_of_fold_proba(params, embeddings, targets, _sources(), 5, 0)
    explicit = out_of_fold_proba(params, embeddings, targets, _sources(), 5, 0, splits=splits)
    np.testing.assert_array_equal(default, explicit)


def test_grouped_folds_hold_out_whole_subjects() -> None:
    targets = np.zeros((120, 2))
    sources = _sources()
    for train, test in grouped_fold_splits(targets, sources, 4, seed=0):
        held = {sources[i] for i in test if "/" in sources[i]}
        seen = {sources[i] for i in train}
        assert held and not held & seen
        assert any(sources[i] == "gsm8k" for i in test)  # a source without subjects is spread over folds
    with pytest.raises(ConfigError, match="at least 2 folds"):
        grouped_fold_splits(targets, sources, 1)
