"""Open a saved classifier (the shipped default when no path is given) with its text encoder.

`load_policy_classifier(policy)` is the one way to get the classifier a policy names; the CLI,
`router eval` and the proxy all go through it or through `load_classifier` with the same pair.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

from classifiers.artifact import ArtifactInfo, classifier_from_weights, load_weights, read_info
from classifiers.embedding_cache import EmbeddingCache
from classifiers.encoders import TextEncoder, make_encoder
from classifiers.estimator import DifficultyClassifier
from classifiers.shipped import shipped_path
from core.errors import ArtifactError

logger = logging.getLogger(__name__)


class ClassifierSettings(Protocol):
    """What a policy's `classifier:` section says (policies.schema.ClassifierConfig)."""

    @property
    def embedding_model(self) -> str | None:
        """An encoder other than the artifact's own; None: the artifact's."""
        ...


class _PolicyConfig(Protocol):
    @property
    def classifier(self) -> ClassifierSettings:
        """The `classifier:` section."""
        ...


class ClassifiedPolicy(Protocol):
    """What loading needs of a policy (policies.Policy): structural, since policies sit above classifiers."""

    @property
    def classifier_path(self) -> Path | None:
        """The artifact folder; None: the shipped default."""
        ...

    @property
    def config(self) -> _PolicyConfig:
        """The validated policy file."""
        ...


def default_classifier_path() -> Path:
    """`$ROUTER_DEFAULT_CLASSIFIER`, else the shipped `data/classifier/` (checkout or installed copy)."""
    configured = os.environ.get("ROUTER_DEFAULT_CLASSIFIER")
    if configured:
        return Path(configured)
    return shipped_path("classifier")


def load_classifier(
    path: str | Path | None = None,
    *,
    encoder: TextEncoder | None = None,
    embedding_model: str | None = None,
    cache: EmbeddingCache | None = None,
    threads: int | None = None,
) -> DifficultyClassifier:
    """Load the artifact at `path` (default: the shipped one) and attach an encoder for its embedding model.

    `threads`: intra-op threads of an ONNX encoder (the proxy uses 1); None: every core.
    """
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
    model_name = embedding_model or _artifact_relative(directory, info.embedding_model)
    if embedding_model and embedding_model != info.embedding_model:
        logger.warning(
            "classifier %s was trained on embeddings from %s but %s was requested; scores may be meaningless",
            directory, info.embedding_model, embedding_model,
        )
    classifier.encoder = encoder if encoder is not None else make_encoder(model_name, cache=cache, threads=threads)
    classifier.info_ = info
    classifier.path_ = directory
    return classifier


def _artifact_relative(directory: Path, name: str) -> str:
    """An encoder saved inside the artifact (a fine-tuned one: `encoder-<hash>/`) is named relative to it."""
    inside = directory / name
    return str(inside) if name and not Path(name).is_absolute() and inside.is_dir() else name


def load_policy_classifier(
    policy: ClassifiedPolicy, *, threads: int | None = None, cache: EmbeddingCache | None = None
) -> DifficultyClassifier:
    """The classifier `policy` names (none named: the shipped default), with the encoder it asks for."""
    return load_classifier(
        policy.classifier_path, embedding_model=policy.config.classifier.embedding_model, cache=cache, threads=threads
    )


def artifact_info(classifier: DifficultyClassifier) -> ArtifactInfo | None:
    """The metadata a loaded classifier came with, if any."""
    return getattr(classifier, "info_", None)
