"""A malformed classifier artifact is an ArtifactError naming the file and what is wrong, and the CLI
prints it without a traceback (issue 10, item 11)."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from classifiers.artifact import METADATA_FILE, WEIGHTS_FILE, save_classifier
from classifiers.estimator import DifficultyClassifier
from classifiers.loading import load_classifier
from core.errors import ArtifactError
from router.cli import app
from tests.conftest import HashEncoder, synthetic_outcomes, write_jsonl


@pytest.fixture(scope="module")
def fitted() -> DifficultyClassifier:
    rows = synthetic_outcomes(repeats=2)
    texts = [str(r["prompt"]) for r in rows]
    outcomes = [r["outcomes"] for r in rows]
    targets = np.array([[float(o["correct"]) for o in row.values()] for row in outcomes if isinstance(row, dict)])
    return DifficultyClassifier(HashEncoder(), n_neighbors=5).fit(texts, targets, ["weak", "strong"])


def artifact(fitted: DifficultyClassifier, directory: Path, damage: Callable[[Path], object]) -> Path:
    """A saved artifact whose weights file `damage` changes; the checksum is updated to match, as an
    operator copying files around would leave it, so the member checks themselves are exercised."""
    save_classifier(
        fitted, directory, label_definition="test", training={}, cv_metrics={},
        neighbour_ids=[f"id{i}" for i in range(40)], neighbour_sources=["s"] * 40,
    )
    weights = directory / WEIGHTS_FILE
    damage(weights)
    info = json.loads((directory / METADATA_FILE).read_text())
    info["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (directory / METADATA_FILE).write_text(json.dumps(info))
    return directory


def without(member: str) -> Callable[[Path], object]:
    def damage(weights: Path) -> None:
        with np.load(weights) as archive:
            arrays = {name: archive[name] for name in archive.files if name != member}
        np.savez(weights, **arrays)

    return damage


def torch_checkpoint(weights: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"linear.weight": torch.zeros(2, 32)}, weights)


def single_array(weights: Path) -> None:
    with weights.open("wb") as handle:  # np.save(path) would add .npy to the name
        np.save(handle, np.zeros(3))


def reshaped(weights: Path) -> None:
    with np.load(weights) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["knn_targets"] = arrays["knn_targets"][:, :1]
    np.savez(weights, **arrays)


CASES: list[tuple[str, Callable[[Path], object], str]] = [
    ("missing-member", without("knn_targets"), "lacks the array 'knn_targets'"),
    ("missing-linear-member", without("linear_intercept"), "lacks the array 'linear_intercept'"),
    ("missing-neighbour-label", without("knn_sources"), "lacks the array 'knn_sources'"),
    ("torch-file", torch_checkpoint, "which a classifier's weights never do"),
    ("pickle-file", lambda weights: weights.write_bytes(pickle.dumps({"w": [1.0]})), "is not a NumPy .npz archive"),
    ("truncated", lambda weights: weights.write_bytes(weights.read_bytes()[:100]), "truncated or corrupt"),
    ("empty", lambda weights: weights.write_bytes(b""), "truncated or corrupt"),
    ("single-array", single_array, "holds a single array"),
    ("wrong-shape", reshaped, "the array 'knn_targets' has shape (40, 1), not (40, 2)"),
]


@pytest.mark.parametrize(("damage", "says"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_malformed_artifact_names_the_file_and_the_fault(
    fitted: DifficultyClassifier, tmp_path: Path, damage: Callable[[Path], object], says: str
) -> None:
    directory = artifact(fitted, tmp_path / "model", damage)
    with pytest.raises(ArtifactError) as caught:
        load_classifier(directory, encoder=HashEncoder())
    message = str(caught.value)
    assert str(directory / WEIGHTS_FILE) in message
    assert says in message


@pytest.mark.parametrize("metadata", ["[1, 2]", "\udcff", ""], ids=["not-an-object", "not-utf8", "empty"])
def test_a_malformed_metadata_file_names_itself(fitted: DifficultyClassifier, tmp_path: Path, metadata: str) -> None:
    directory = artifact(fitted, tmp_path / "model", lambda weights: None)
    (directory / METADATA_FILE).write_bytes(metadata.encode("utf-8", "surrogateescape"))
    with pytest.raises(ArtifactError, match=METADATA_FILE):
        load_classifier(directory, encoder=HashEncoder())


def test_the_cli_prints_the_error_without_a_traceback(fitted: DifficultyClassifier, tmp_path: Path) -> None:
    directory = artifact(fitted, tmp_path / "model", without("knn_targets"))
    prompts = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "What is 2 + 2?"}])
    result = CliRunner().invoke(
        app, ["classifier", "score", "--model", str(directory), "--input", str(prompts), "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error:" in result.output and WEIGHTS_FILE in result.output and "knn_targets" in result.output
    assert "Traceback" not in result.output
