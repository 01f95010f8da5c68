"""The package's public surface is exactly `__all__`, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import classifiers


def test_every_public_name_resolves() -> None:
    assert sorted(classifiers.__all__) == sorted(
        [
            "DifficultyClassifier", "OutcomeRecord", "SentenceTransformerEncoder", "TextEncoder", "TierOutcome",
            "default_classifier_path", "load_classifier", "load_records",
        ]
    )
    for name in classifiers.__all__:
        assert getattr(classifiers, name) is not None


def test_import_does_not_load_torch() -> None:
    code = "import sys, classifiers, classifiers.loaders; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
