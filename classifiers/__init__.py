"""The embedding-based difficulty classifier: data, encoders, the estimator, metrics and artifacts.

    clf = load_classifier()                      # the default shipped in data/classifier/
    clf.predict_difficulty(["What is 2 + 2?"])   # P(cheapest tier answers wrong), in [0, 1]

Imports are lazy so that `import classifiers` stays cheap (no torch until an encoder is used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from classifiers.encoders import SentenceTransformerEncoder, TextEncoder
    from classifiers.estimator import DifficultyClassifier
    from classifiers.loaders import load_records
    from classifiers.loading import default_classifier_path, load_classifier
    from classifiers.records import OutcomeRecord, TierOutcome

__all__ = [
    "DifficultyClassifier",
    "OutcomeRecord",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "TierOutcome",
    "default_classifier_path",
    "load_classifier",
    "load_records",
]

_HOMES = {
    "DifficultyClassifier": "classifiers.estimator",
    "OutcomeRecord": "classifiers.records",
    "SentenceTransformerEncoder": "classifiers.encoders",
    "TextEncoder": "classifiers.encoders",
    "TierOutcome": "classifiers.records",
    "default_classifier_path": "classifiers.loading",
    "load_classifier": "classifiers.loading",
    "load_records": "classifiers.loaders",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'classifiers' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
