"""Save and load a fitted classifier as a directory: JSON metadata plus an `.npz` of plain arrays.

Nothing is unpickled on load (`np.load(allow_pickle=False)`), so an artifact from anywhere is safe
to open. The metadata records the embedding model, label definition, training-data hash and size,
cross-validation metrics and library versions; loading checks the format version, the weights'
checksum and the embedding width, and says what to do when they do not match.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.estimator import DifficultyClassifier, KnnScorer
from core.errors import ArtifactError

FORMAT_VERSION = 1
METADATA_FILE = "classifier.json"
WEIGHTS_FILE = "weights.npz"
_INT8_SCALE = 127.0  # the kNN index is stored as int8: cosine similarity survives to ~1e-2


@dataclass
class ArtifactInfo:
    """What the metadata file says about a saved classifier."""

    embedding_model: str
    embedding_dim: int
    tiers: list[str]
    label_definition: str
    params: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    cv_metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers."""
    versions = {"python": platform.python_version()}
    for name in ("numpy", "scikit-learn", "sentence-transformers", "difficulty-router"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def save_classifier(
    classifier: DifficultyClassifier,
    directory: Path,
    *,
    label_definition: str,
    training: dict[str, Any],
    cv_metrics: dict[str, Any],
    neighbour_ids: list[str] | None = None,
    neighbour_sources: list[str] | None = None,
) -> Path:
    """Write `classifier.json` and `weights.npz` into `directory` (created if needed)."""
    if not hasattr(classifier, "tiers_") or classifier.encoder is None:
        raise ArtifactError("Only a fitted classifier with an encoder can be saved: call fit() first.")
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    if classifier.linear_:
        dim = classifier.n_features_in_
        arrays["linear_coef"] = np.array(
            [np.zeros(dim) if isinstance(m, float) else m[0] for m in classifier.linear_], dtype=np.float32
        )
        arrays["linear_intercept"] = np.array([0.0 if isinstance(m, float) else m[1] for m in classifier.linear_])
        arrays["linear_constant"] = np.array([m if isinstance(m, float) else np.nan for m in classifier.linear_])
    if classifier.knn_ is not None:
        arrays["knn_index"] = np.rint(classifier.knn_.index_ * _INT8_SCALE).astype(np.int8)
        arrays["knn_targets"] = classifier.knn_.targets_.astype(np.float32)
        arrays["knn_prior_weight"] = np.array(classifier.knn_.prior_weight)
        if neighbour_ids is not None:
            arrays["knn_ids"] = np.array(neighbour_ids, dtype=np.str_)
            arrays["knn_sources"] = np.array(neighbour_sources or [""] * len(neighbour_ids), dtype=np.str_)
    weights_path = directory / WEIGHTS_FILE
    np.savez_compressed(weights_path, **arrays)  # type: ignore[arg-type]
    info = {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedding_model": classifier.encoder.name,
        "embedding_dim": classifier.n_features_in_,
        "tiers": classifier.tiers_,
        "label_definition": label_definition,
        "params": classifier.get_params(),
        "training": training,
        "cv_metrics": cv_metrics,
        "versions": library_versions(),
        "weights_sha256": _sha256(weights_path),
    }
    (directory / METADATA_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return directory


def read_info(directory: Path) -> tuple[ArtifactInfo, dict[str, Any]]:
    """Parse and check `classifier.json`; returns the typed info and the raw dict."""
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        raise ArtifactError(
            f"{directory} is not a classifier artifact: {METADATA_FILE} is missing. "
            "Pass the folder written by `router classifier train --out DIR`."
        )
    try:
        raw = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{meta_path} is not valid JSON ({error}); retrain or restore the artifact.") from error
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{directory} has artifact format {version!r}, but this version of the router reads format "
            f"{FORMAT_VERSION}. Retrain it with `router classifier train`, or install the router version that wrote it "
            f"({raw.get('versions', {}).get('difficulty-router', 'unknown')})."
        )
    try:
        info = ArtifactInfo(
            embedding_model=str(raw["embedding_model"]),
            embedding_dim=int(raw["embedding_dim"]),
            tiers=[str(t) for t in raw["tiers"]],
            label_definition=str(raw["label_definition"]),
            params=dict(raw["params"]),
            training=dict(raw.get("training", {})),
            cv_metrics=dict(raw.get("cv_metrics", {})),
            created=str(raw.get("created", "")),
            versions=dict(raw.get("versions", {})),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{meta_path} lacks or mistypes the field {error}; retrain the classifier.") from error
    return info, raw


def load_weights(directory: Path, raw_info: dict[str, Any]) -> dict[str, np.ndarray]:
    """Load the weight arrays after checking their checksum; never unpickles."""
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ArtifactError(f"{weights_path} is missing; the artifact is incomplete. Retrain or restore it.")
    expected = raw_info.get("weights_sha256")
    if expected and _sha256(weights_path) != expected:
        raise ArtifactError(
            f"{weights_path} does not match the checksum in {METADATA_FILE}: the file was changed or corrupted. "
            "Retrain or restore the artifact."
        )
    try:
        with np.load(weights_path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as error:
        raise ArtifactError(f"{weights_path} holds objects that would need unpickling; refusing to load it.") from error


def classifier_from_weights(info: ArtifactInfo, arrays: dict[str, np.ndarray]) -> DifficultyClassifier:
    """Rebuild a fitted DifficultyClassifier (without encoder) from saved arrays."""
    params = info.params
    classifier = DifficultyClassifier(
        model=str(params.get("model", "ensemble")),
        C=float(params.get("C", 1.0)),
        n_neighbors=int(params.get("n_neighbors", 100)),
        random_state=int(params.get("random_state", 0)),
    )
    classifier.tiers_ = info.tiers
    classifier.n_features_in_ = info.embedding_dim
    classifier.linear_ = []
    if "linear_coef" in arrays:
        for coef, intercept, constant in zip(
            arrays["linear_coef"], arrays["linear_intercept"], arrays["linear_constant"], strict=True
        ):
            classifier.linear_.append(
                float(constant) if not np.isnan(constant) else (coef.astype(np.float64), float(intercept))
            )
    classifier.knn_ = None
    if "knn_index" in arrays:
        knn = KnnScorer(classifier.n_neighbors, float(arrays["knn_prior_weight"]))
        knn.fit(arrays["knn_index"].astype(np.float32) / _INT8_SCALE, arrays["knn_targets"].astype(np.float64))
        classifier.knn_ = knn
        if "knn_ids" in arrays:
            classifier.neighbour_ids_ = [str(i) for i in arrays["knn_ids"]]
            classifier.neighbour_sources_ = [str(s) for s in arrays["knn_sources"]]
    widths = {a.shape[-1] for name, a in arrays.items() if name in ("linear_coef", "knn_index")}
    if widths and widths != {info.embedding_dim}:
        raise ArtifactError(
            f"The weights have width {widths} but the metadata says embedding_dim {info.embedding_dim}; "
            "the artifact is inconsistent. Retrain it."
        )
    return classifier


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
