"""Saving and loading classifier artifacts safely."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from classifiers.artifact import METADATA_FILE, WEIGHTS_FILE, save_classifier
from classifiers.estimator import DifficultyClassifier
from classifiers.loading import load_classifier
from core.errors import ArtifactError, ConfigError
from tests.conftest import HashEncoder, synthetic_outcomes


def _fitted(encoder: HashEncoder, kind: str = "ensemble", knn_dims: int | None = None) -> tuple[DifficultyClassifier, list[str]]:
    rows = synthetic_outcomes(repeats=2)
    texts = [str(r["prompt"]) for r in rows]
    targets = np.array([[float(o["correct"]) for o in r["outcomes"].values()] for r in rows])  # type: ignore[union-attr]
    clf = DifficultyClassifier(encoder, model=kind, n_neighbors=5, knn_dims=knn_dims).fit(texts, targets, ["weak", "strong"])
    return clf, texts


def _save(clf: DifficultyClassifier, directory: Path) -> Path:
    return save_classifier(
        clf, directory, label_definition="test", training={"rows": 40}, cv_metrics={},
        neighbour_ids=[f"id{i}" for i in range(40)], neighbour_sources=["s"] * 40,
    )


@pytest.mark.parametrize("kind", ["logreg", "knn", "ensemble"])
def test_round_trip_gives_same_scores(kind: str, hash_encoder: HashEncoder, tmp_path: Path) -> None:
    clf, texts = _fitted(hash_encoder, kind)
    _save(clf, tmp_path / "model")
    loaded = load_classifier(tmp_path / "model", encoder=hash_encoder)
    assert loaded.tiers_ == ["weak", "strong"]
    # The kNN index is stored as int8, so scores agree to about 1e-2.
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=0.02)
    info = json.loads((tmp_path / "model" / METADATA_FILE).read_text())
    assert info["embedding_model"] == "test/hash-encoder"
    assert info["versions"]["scikit-learn"]
    if kind != "logreg":
        assert loaded.neighbour_ids_ is not None and loaded.neighbour_ids_[3] == "id3"


def test_projected_knn_round_trips_and_finds_the_same_neighbours(hash_encoder: HashEncoder, tmp_path: Path) -> None:
    clf, texts = _fitted(hash_encoder, "ensemble", knn_dims=8)
    assert clf.knn_ is not None and clf.knn_.index_.shape == (40, 8)
    _save(clf, tmp_path / "model")
    loaded = load_classifier(tmp_path / "model", encoder=hash_encoder)
    assert loaded.knn_dims == 8 and loaded.knn_ is not None and loaded.knn_.index_.shape == (40, 8)
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=0.02)
    vectors = hash_encoder.encode(texts[:3])
    assert (loaded.knn_.neighbours(vectors, 1)[0] == clf.knn_.neighbours(vectors, 1)[0]).all()


def test_projection_without_its_centre_is_refused(hash_encoder: HashEncoder, tmp_path: Path) -> None:
    clf, _ = _fitted(hash_encoder, "knn", knn_dims=8)
    directory = _save(clf, tmp_path / "model")
    with np.load(directory / WEIGHTS_FILE) as saved:
        arrays = {name: saved[name] for name in saved.files if name != "knn_center"}
    np.savez_compressed(directory / WEIGHTS_FILE, **arrays)
    info = json.loads((directory / METADATA_FILE).read_text())
    info["weights_sha256"] = hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest()
    (directory / METADATA_FILE).write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="knn_center"):
        load_classifier(directory, encoder=hash_encoder)


def test_knn_dims_must_be_a_positive_integer(hash_encoder: HashEncoder) -> None:
    with pytest.raises(ConfigError, match="knn_dims"):
        _fitted(hash_encoder, "knn", knn_dims=0)


def test_changed_weights_are_refused(hash_encoder: HashEncoder, tmp_path: Path) -> None:
    clf, _ = _fitted(hash_encoder)
    directory = _save(clf, tmp_path / "model")
    np.savez(directory / WEIGHTS_FILE, linear_coef=np.zeros((2, 32)))
    with pytest.raises(ArtifactError, match="checksum"):
        load_classifier(directory, encoder=hash_encoder)


def test_pickled_arrays_are_never_loaded(hash_encoder: HashEncoder, tmp_path: Path) -> None:
    clf, _ = _fitted(hash_encoder)
    directory = _save(clf, tmp_path / "model")
    np.savez(directory / WEIGHTS_FILE, evil=np.array([{"a": 1}], dtype=object))
    info = json.loads((directory / METADATA_FILE).read_text())
    info.pop("weights_sha256")
    (directory / METADATA_FILE).write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="unpickling"):
        load_classifier(directory, encoder=hash_encoder)


def test_other_format_version_says_how_to_fix(hash_encoder: HashEncoder, tmp_path: Path) -> None:
    clf, _ = _fitted(hash_encoder)
    directory = _save(clf, tmp_path / "model")
    info = json.loads((directory / METADATA_FILE).read_text())
    info["format_version"] = 99
    (directory / METADATA_FILE).write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="Retrain it with `router classifier train`"):
        load_classifier(directory, encoder=hash_encoder)


def test_missing_or_foreign_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="No classifier at"):
        load_classifier(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="classifier.json is missing"):
        load_classifier(tmp_path / "empty")


def test_unfitted_classifier_cannot_be_saved(hash_encoder: HashEncoder, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="fit"):
        _save(DifficultyClassifier(hash_encoder), tmp_path / "x")
