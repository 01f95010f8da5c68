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
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.npyio import NpzFile

from classifiers.estimator import DifficultyClassifier, KnnScorer
from core.errors import ArtifactError

FORMAT_VERSION = 1
METADATA_FILE = "classifier.json"
WEIGHTS_FILE = "weights.npz"
_INT8_SCALE = 127.0  # the kNN index is stored as int8: cosine similarity survives to ~1e-2
# The members of weights.npz: what each part of the model needs, and the optional neighbour labels.
_LINEAR = ("linear_coef", "linear_intercept", "linear_constant")
_KNN = ("knn_index", "knn_targets", "knn_prior_weight")
_NEIGHBOURS = ("knn_ids", "knn_sources")
_PROJECTION = ("knn_center", "knn_projection")  # with knn_dims: the index holds projected vectors
_ALL_MEMBERS = (*_LINEAR, *_KNN, *_NEIGHBOURS, *_PROJECTION)


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
        if classifier.knn_.projection_ is not None and classifier.knn_.center_ is not None:
            arrays["knn_center"] = classifier.knn_.center_.astype(np.float32)
            arrays["knn_projection"] = classifier.knn_.projection_.astype(np.float32)
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
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{meta_path} is not valid JSON ({error}); retrain or restore the artifact.") from error
    if not isinstance(raw, dict):
        raise ArtifactError(f"{meta_path} is not a JSON object; retrain or restore the artifact.")
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
    """Load the weight arrays after checking their checksum, members and shapes; never unpickles."""
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ArtifactError(f"{weights_path} is missing; the artifact is incomplete. Retrain or restore it.")
    expected = raw_info.get("weights_sha256")
    if expected and _sha256(weights_path) != expected:
        raise ArtifactError(
            f"{weights_path} does not match the checksum in {METADATA_FILE}: the file was changed or corrupted. "
            "Retrain or restore the artifact."
        )
    # The file is opened here, not by np.load, which leaves it open when the zip is corrupt.
    with weights_path.open("rb") as handle:
        arrays = _read_members(weights_path, handle)
    _check_arrays(weights_path, arrays, raw_info)
    return arrays


def _read_members(weights_path: Path, handle: BinaryIO) -> dict[str, np.ndarray]:
    """Every member of the open archive, refusing pickles, other formats and foreign members."""
    try:
        archive = np.load(handle, allow_pickle=False)
    except ValueError as error:  # numpy takes any file that is neither .npy nor a zip for a pickle
        raise ArtifactError(
            f"{weights_path} is not a NumPy .npz archive (a pickle, or another format); refusing to load it. "
            "Retrain or restore the artifact."
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ArtifactError(
            f"{weights_path} cannot be read as a NumPy .npz archive ({error}); it is truncated or corrupt. "
            "Retrain or restore the artifact."
        ) from error
    if not isinstance(archive, NpzFile):
        raise ArtifactError(
            f"{weights_path} holds a single array, not the .npz archive of named arrays a classifier is saved as. "
            "Retrain or restore the artifact."
        )
    with archive:
        arrays: dict[str, np.ndarray] = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError as error:
                raise ArtifactError(
                    f"{weights_path}: the array {name!r} holds objects that would need unpickling; "
                    "refusing to load it."
                ) from error
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise ArtifactError(
                    f"{weights_path}: the array {name!r} cannot be read ({error}); the file is corrupt. "
                    "Retrain or restore the artifact."
                ) from error
        unknown = sorted(set(arrays) - set(_ALL_MEMBERS))
        if unknown:
            shown = ", ".join(repr(name) for name in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise ArtifactError(
                f"{weights_path} holds {shown}, which a classifier's weights never do: it is another kind of "
                "file (a torch checkpoint is a zip archive too). Retrain or restore the artifact."
            )
    return arrays


def _check_arrays(path: Path, arrays: dict[str, np.ndarray], raw_info: dict[str, Any]) -> None:
    """Every member the metadata's model kind needs is there, with shapes that agree."""
    params = raw_info.get("params")
    kind = str(params.get("model", "ensemble")) if isinstance(params, dict) else "ensemble"
    needed = [*(_LINEAR if kind in ("logreg", "ensemble") else ()), *(_KNN if kind in ("knn", "ensemble") else ())]
    if "knn_ids" in arrays or "knn_sources" in arrays:
        needed += _NEIGHBOURS
    if "knn_center" in arrays or "knn_projection" in arrays:
        needed += _PROJECTION
    for name in needed:
        if name not in arrays:
            why = "its pair" if name in (*_NEIGHBOURS, *_PROJECTION) else f"the {kind!r} model in {METADATA_FILE}"
            raise ArtifactError(
                f"{path} lacks the array {name!r}, which {why} needs; the artifact is incomplete. "
                "Retrain or restore it."
            )
    n_tiers = len(raw_info.get("tiers") or ())
    expected: dict[str, tuple[int | None, ...]] = {
        "linear_coef": (n_tiers, None),
        "linear_intercept": (n_tiers,),
        "linear_constant": (n_tiers,),
        "knn_index": (None, None),
        "knn_targets": (len(arrays["knn_index"]) if "knn_index" in arrays else None, n_tiers),
        "knn_prior_weight": (),
        "knn_ids": (len(arrays["knn_index"]) if "knn_index" in arrays else None,),
        "knn_sources": (len(arrays["knn_index"]) if "knn_index" in arrays else None,),
        "knn_center": (None,),
        "knn_projection": (None, arrays["knn_index"].shape[-1] if "knn_index" in arrays and arrays["knn_index"].ndim == 2 else None),
    }
    for name, array in arrays.items():
        shape = expected[name]
        mismatch = array.ndim != len(shape) or any(
            want not in (None, got) for want, got in zip(shape, array.shape, strict=True)
        )
        if mismatch:
            wanted = str(tuple("n" if want is None else want for want in shape)).replace("'", "")
            raise ArtifactError(
                f"{path}: the array {name!r} has shape {array.shape}, not {wanted} as the metadata implies "
                f"({n_tiers} tiers); the artifact is inconsistent. Retrain it."
            )
        textual = name in _NEIGHBOURS
        if textual != (array.dtype.kind == "U") or (not textual and array.dtype.kind not in "fiu"):
            raise ArtifactError(
                f"{path}: the array {name!r} has dtype {array.dtype}, not {'text' if textual else 'numbers'}; "
                "the artifact is inconsistent. Retrain it."
            )


def classifier_from_weights(info: ArtifactInfo, arrays: dict[str, np.ndarray]) -> DifficultyClassifier:
    """Rebuild a fitted DifficultyClassifier (without encoder) from saved arrays."""
    params = info.params
    classifier = DifficultyClassifier(
        model=str(params.get("model", "ensemble")),
        C=float(params.get("C", 1.0)),
        n_neighbors=int(params.get("n_neighbors", 100)),
        knn_dims=None if params.get("knn_dims") is None else int(params["knn_dims"]),
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
        knn = KnnScorer(classifier.n_neighbors, float(arrays["knn_prior_weight"]), dims=classifier.knn_dims)
        knn.restore(
            arrays["knn_index"].astype(np.float32) / _INT8_SCALE, arrays["knn_targets"].astype(np.float64),
            arrays.get("knn_center"), arrays.get("knn_projection"),
        )
        classifier.knn_ = knn
        if "knn_ids" in arrays:
            classifier.neighbour_ids_ = [str(i) for i in arrays["knn_ids"]]
            classifier.neighbour_sources_ = [str(s) for s in arrays["knn_sources"]]
    # The input width: the linear weights', the projection's rows, or else the index's.
    inputs = ("linear_coef", "knn_center", "knn_projection" if "knn_projection" in arrays else "knn_index")
    widths = {a.shape[0] if name == "knn_projection" else a.shape[-1] for name, a in arrays.items() if name in inputs}
    if widths and widths != {info.embedding_dim}:
        raise ArtifactError(
            f"The weights have width {widths} but the metadata says embedding_dim {info.embedding_dim}; "
            "the artifact is inconsistent. Retrain it."
        )
    return classifier


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
