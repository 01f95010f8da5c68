"""Open a saved classifier (the shipped default when no path is given) with its text encoder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from classifiers.artifact import ArtifactInfo, classifier_from_weights, load_weights, read_info
from classifiers.embedding_cache import EmbeddingCache
from classifiers.encoders import SentenceTransformerEncoder, TextEncoder
from classifiers.estimator import DifficultyClassifier
from core.errors import ArtifactError

logger = logging.getLogger(__name__)


def default_classifier_path() -> Path:
    """`$ROUTER_DEFAULT_CLASSIFIER`, else `data/classifier/` of this source checkout."""
    configured = os.environ.get("ROUTER_DEFAULT_CLASSIFIER")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "data" / "classifier"


def load_classifier(
    path: str | Path | None = None,
    *,
    encoder: TextEncoder | None = None,
    embedding_model: str | None = None,
    cache: EmbeddingCache | None = None,
) -> DifficultyClassifier:
    """Load the artifact at `path` (default: the shipped one) and attach an encoder for its embedding model."""
    directory = Path(path) if path is not None else default_classifier_path()
    if not directory.exists():
        hint = (
            "The shipped default is built by `router classifier train` as described in data/README.md."
            if path is None
            else "Check the path, or train one with `router classifier train --data ... --out DIR`."
        )
        raise ArtifactError(f"No classifier at {directory}. {hint}")
    info, raw = read_info(directory)
    classifier = classifier_from_weights(info, load_weights(directory, raw))
    model_name = embedding_model or info.embedding_model
    if embedding_model and embedding_model != info.embedding_model:
        logger.warning(
            "classifier %s was trained on embeddings from %s but %s was requested; scores may be meaningless",
            directory, info.embedding_model, embedding_model,
        )
    classifier.encoder = encoder if encoder is not None else SentenceTransformerEncoder(model_name, cache=cache)
    classifier.info_ = info
    classifier.path_ = directory
    return classifier


def artifact_info(classifier: DifficultyClassifier) -> ArtifactInfo | None:
    """The metadata a loaded classifier came with, if any."""
    return getattr(classifier, "info_", None)
