"""The two-stage score: margin calibration, who decides, the static encoder, and loading the shipped first stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from classifiers.encoders import STATIC_EMBEDDING_MODEL, make_encoder
from classifiers.loading import load_classifier
from classifiers.shipped import SHIPPED_FIRST_STAGE, SHIPPED_STATIC_ENCODER, shipped_path
from classifiers.static_encoder import StaticEncoder
from classifiers.two_stage import (
    CALIBRATION_FILE,
    TWO_STAGE_FILE,
    Calibration,
    TwoStageClassifier,
    calibrate_margin,
    decided_by_first,
    load_first_stage,
    read_two_stage,
)
from core.errors import ArtifactError, ConfigError, EmbeddingError
from tests.conftest import TableScorer


def test_margin_keeps_disagreement_within_the_allowance_and_is_the_smallest_that_does() -> None:
    rng = np.random.default_rng(0)
    second = rng.random(5000)
    first = np.clip(second + rng.normal(0, 0.1, 5000), 0, 1)
    for cut in (0.2, 0.5, 0.8):
        for allowance in (0.0, 0.002, 0.01):
            margin = calibrate_margin(first, second, cut, allowance)
            decided = np.abs(first - cut) > margin
            differs = decided & ((first >= cut) != (second >= cut))
            assert differs.mean() <= allowance
            # One step closer to the cut lets in the text that breaks the allowance.
            closer = np.abs(first - cut) >= margin
            assert (closer & ((first >= cut) != (second >= cut))).mean() > allowance


def test_stages_that_always_agree_need_no_margin() -> None:
    scores = np.array([0.1, 0.4, 0.6, 0.9])
    assert calibrate_margin(scores, scores, 0.5, 0.0) == 0.0
    assert calibrate_margin(scores, scores + 0.05, 0.5, 0.0) == 0.0  # never across the cut


def test_calibration_refuses_mismatched_scores_and_bad_allowances() -> None:
    with pytest.raises(ConfigError, match="same texts"):
        calibrate_margin(np.zeros(3), np.zeros(4), 0.5, 0.01)
    with pytest.raises(ConfigError, match="disagreement"):
        calibrate_margin(np.zeros(3), np.zeros(3), 0.5, 1.0)


def test_decided_by_first_needs_every_cut_beyond_its_margin() -> None:
    first = np.array([0.1, 0.28, 0.45, 0.9])
    assert decided_by_first(first, [0.3, 0.7], [0.05, 0.1]).tolist() == [True, False, True, True]
    assert decided_by_first(first, [], []).all()


def test_the_transformer_scores_only_texts_near_a_cut() -> None:
    first = TableScorer({"easy": 0.05, "near": 0.48, "hard": 0.95})
    second = TableScorer({"easy": 0.2, "near": 0.55, "hard": 0.7})
    agreeing = np.linspace(0, 1, 101)
    calibration = Calibration({"difficulty": agreeing}, {"difficulty": np.clip(agreeing + 0.02, 0, 1)})
    scorer = TwoStageClassifier(first, second, calibration, disagreement=0.0)
    assert scorer.margins("difficulty", (0.5,)) == (pytest.approx(0.02, abs=0.011),)
    scores = scorer.predict_score(["easy", "near", "hard"], "difficulty", (0.5,))
    assert scores.tolist() == [0.05, 0.55, 0.95]  # the near one is the transformer's
    assert second.calls == [["near"]]
    assert (scorer.counts.first, scorer.counts.second) == (2, 1)


def test_without_cuts_every_score_is_the_transformers() -> None:
    first, second = TableScorer({"a": 0.1}), TableScorer({"a": 0.3})
    calibration = Calibration({"difficulty": np.zeros(2)}, {"difficulty": np.zeros(2)})
    scorer = TwoStageClassifier(first, second, calibration)
    assert scorer.predict_score(["a"], "difficulty", ()).tolist() == [0.3]
    assert first.calls == []
    with pytest.raises(ConfigError, match="score must be one of difficulty"):
        scorer.margins("gain", (0.5,))


def test_static_encoder_vectors_are_unit_length_and_a_function_of_the_text() -> None:
    encoder = make_encoder(STATIC_EMBEDDING_MODEL)
    assert isinstance(encoder, StaticEncoder)
    texts = ["What is 17 times 23?", "Prove that there are infinitely many primes.", "", "\u200b"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (4, encoder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert not vectors[2].any()  # no tokens: the zero vector, as model2vec gives
    assert np.array_equal(encoder.encode(texts[:1])[0], vectors[0])  # batch-independent
    assert float(vectors[0] @ vectors[1]) < 0.9


def test_static_encoder_matches_model2vec() -> None:
    model2vec = pytest.importorskip("model2vec")
    from tokenizers import Tokenizer

    folder = shipped_path(SHIPPED_STATIC_ENCODER)
    with np.load(folder / "embeddings.npz", allow_pickle=False) as saved:
        table = saved["embeddings"].astype(np.float32)
    reference = model2vec.StaticModel(vectors=table, tokenizer=Tokenizer.from_file(str(folder / "tokenizer.json")), normalize=True)
    # Texts within the shipped encoder's 64 tokens: a longer one keeps both ends here, the head in model2vec.
    texts = ["Janet's ducks lay 16 eggs per day.", "ünïcode 漢字 and [UNK] tokens", "x " * 60]
    assert np.allclose(StaticEncoder(folder).encode(texts), reference.encode(texts), atol=1e-6)


def test_static_encoder_names_a_missing_table(tmp_path: Path) -> None:
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "encoder.json").write_text(json.dumps({"name": "x", "kind": "static", "dim": 4, "max_tokens": 8}))
    with pytest.raises(EmbeddingError, match="embeddings.npz is missing; re-distill"):
        StaticEncoder(folder).encode(["hi"])


def test_shipped_first_stage_loads_before_the_shipped_classifier_and_decides_alone_far_from_a_cut() -> None:
    second = load_classifier(threads=1)
    scorer = load_first_stage(None, second, disagreement=0.01)
    assert scorer.second is second
    texts = ["What is the capital of France?", "hi"]
    first = scorer.first.predict_score(texts, "difficulty")
    margin = scorer.margins("difficulty", (0.5,))[0]
    assert 0.0 < margin < 0.5
    scores = scorer.predict_score(texts, "difficulty", (0.5,))
    exact = second.predict_score(texts, "difficulty")
    for alone, got, want in zip(first, scores, exact, strict=True):
        assert got == (alone if abs(alone - 0.5) > margin else pytest.approx(want))


def test_a_first_stage_calibrated_for_another_classifier_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "first"
    folder.mkdir()
    for path in shipped_path(SHIPPED_FIRST_STAGE).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    raw = json.loads((folder / TWO_STAGE_FILE).read_text())
    raw["second_stage"]["data_sha256"] = "0" * 64
    (folder / TWO_STAGE_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=r"classifier\.first_stage\.path: the first stage at .* was calibrated against"):
        load_first_stage(folder, load_classifier(threads=1), disagreement=0.01)


def test_missing_or_broken_first_stage_files_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"classifier\.first_stage\.path: no first-stage classifier at"):
        load_first_stage(tmp_path / "nowhere", load_classifier(threads=1), disagreement=0.01)
    (tmp_path / TWO_STAGE_FILE).write_text(json.dumps({"second_stage": {}}))
    with pytest.raises(ArtifactError, match=f"{CALIBRATION_FILE} is missing"):
        read_two_stage(tmp_path)
    np.savez(tmp_path / CALIBRATION_FILE, first_gain=np.zeros(3), second_gain=np.zeros(4))
    with pytest.raises(ArtifactError, match="arrays of one length"):
        read_two_stage(tmp_path)


SHARING_TEXTS = [
    "What is 17 times 23?", "hi", "", "Prove that there are infinitely many primes.",
    " ".join(f"word{i} is number {i}." for i in range(200)),  # over 64 tokens and 512 characters
    "naïve Ångström 中文 x²+y² 🙂 " * 40, "x" * 5_000, "é" * 3_000 + " end",
    "Which of the following is true? (A) 3.14159 (B) $1,000 (C) don't (D) well-known",
]


def test_the_two_stages_tokenize_each_text_once_and_score_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    from classifiers import onnx_encoder
    from classifiers.onnx_encoder import OnnxEncoder

    classifier = load_classifier(threads=1)
    two_stage = load_first_stage(None, classifier, disagreement=0.005)
    static = two_stage.first.encoder  # type: ignore[attr-defined]
    assert static.shared_rows is classifier.encoder.shared_rows is not None  # type: ignore[attr-defined]
    # The first stage's vectors are those of its own tokenizer, and the transformer's tokens its own.
    np.testing.assert_allclose(static.encode(SHARING_TEXTS), StaticEncoder(static.folder).encode(SHARING_TEXTS), atol=1e-6)
    unshared = OnnxEncoder(classifier.encoder.folder)  # type: ignore[attr-defined]
    for text in SHARING_TEXTS:
        static.encode([text])
        for mine, theirs in zip(classifier.encoder.tokenize([text]), unshared.tokenize([text]), strict=True):  # type: ignore[attr-defined]
            np.testing.assert_array_equal(mine, theirs)
    # After the first stage, the transformer tokenizes nothing of its own.
    static.encode(SHARING_TEXTS)

    def no_tokenizing(*args: object, **kwargs: object) -> list[list[int]]:
        raise AssertionError("the transformer tokenized a text the first stage had tokenized")

    monkeypatch.setattr(onnx_encoder, "token_rows", no_tokenizing)
    classifier.encoder.encode(SHARING_TEXTS)  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="tokenized a text"):
        classifier.encoder.encode(["a text no first stage saw"])  # type: ignore[attr-defined]


def test_shared_token_rows_keep_only_the_newest() -> None:
    from classifiers.onnx_encoder import TokenRows

    rows = TokenRows(keep=64, capacity=3)
    rows.put(["a", "b", "c"], [[1], [2], [3]])
    rows.put(["a", "d"], [[1], [4]])  # "a" again: it becomes the newest, "b" the oldest
    assert len(rows) == 3 and rows.get("b") is None and [rows.get(t) for t in "acd"] == [[1], [3], [4]]


def test_tokens_are_not_shared_when_the_transformer_keeps_more_than_the_first_stage(tmp_path: Path) -> None:
    from classifiers.onnx_encoder import OnnxEncoder
    from classifiers.shipped import SHIPPED_ENCODER

    folder = tmp_path / "static"
    shutil.copytree(shipped_path(SHIPPED_STATIC_ENCODER), folder)
    info = json.loads((folder / "encoder.json").read_text())
    (folder / "encoder.json").write_text(json.dumps({**info, "max_tokens": 32}))
    static, onnx = StaticEncoder(folder), OnnxEncoder(shipped_path(SHIPPED_ENCODER))
    before = static.encode(SHARING_TEXTS)
    assert not static.share_tokens(onnx) and static.shared_rows is None and onnx.shared_rows is None
    np.testing.assert_array_equal(static.encode(SHARING_TEXTS), before)
