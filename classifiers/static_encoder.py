"""A static sentence encoder: a table of token vectors, averaged; numpy and `tokenizers` only.

The shipped one (data/encoders/minilm-l6-static/) is distilled from the packaged all-MiniLM-L6-v2
with model2vec (data/encoders/distill.py). It encodes a short prompt in a fraction of a
millisecond and routes a little worse than the transformer, which is why it serves as the first
stage of a two-stage decision (classifiers.two_stage) rather than alone. A folder holds
`embeddings.npz`, `tokenizer.json` and `encoder.json` with "kind": "static".

Encoding is model2vec's: tokens without special tokens, the unknown token dropped, at most
`max_tokens` tokens, the mean of their rows, L2-normalised (an all-unknown text is the zero vector).
With "truncation": "head_tail" in encoder.json the tokens kept of a longer text are its first and
last halves of `max_tokens` (as the ONNX encoder keeps them), and only its ends are tokenized.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from classifiers.onnx_encoder import ENCODER_FILE, OnnxEncoderInfo, TokenRows, head_and_tail_tokens, read_encoder_info
from core.errors import EmbeddingError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from classifiers.onnx_encoder import OnnxEncoder

EMBEDDINGS_FILE = "embeddings.npz"
TOKENIZER_FILE = "tokenizer.json"
STATIC_KIND = "static"


def is_static_encoder_folder(path: Path) -> bool:
    """True when `path` holds an encoder.json saying "kind": "static"."""
    try:
        return bool(json.loads((path / ENCODER_FILE).read_text()).get("kind") == STATIC_KIND)
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


class StaticEncoder:
    """Embeds texts as the normalised mean of their tokens' rows in a distilled table."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.info: OnnxEncoderInfo = read_encoder_info(self.folder)
        self.name = self.info.name
        self._table: np.ndarray | None = None
        self._tokenizer: Tokenizer | None = None
        self._known: np.ndarray | None = None  # per token id: whether its row counts (the unknown token's does not)
        self._load_lock = threading.Lock()
        self.shared_rows: TokenRows | None = None

    @property
    def dim(self) -> int:
        """Width of the vectors."""
        return self.info.dim

    def _load(self) -> tuple[np.ndarray, Tokenizer]:
        if self._table is not None and self._tokenizer is not None:
            return self._table, self._tokenizer  # loaded: no lock on the hot path
        with self._load_lock:
            if self._table is None or self._tokenizer is None:
                from tokenizers import Tokenizer

                for name in (EMBEDDINGS_FILE, TOKENIZER_FILE):
                    if not (self.folder / name).is_file():
                        raise EmbeddingError(
                            f"{self.folder / name} is missing; re-distill with `python data/encoders/distill.py`."
                        )
                try:
                    with np.load(self.folder / EMBEDDINGS_FILE, allow_pickle=False) as saved:
                        # float16 on disk; float32 in memory, so sums of many rows do not lose digits.
                        table = np.asarray(saved["embeddings"], dtype=np.float32)
                except (OSError, KeyError, ValueError) as error:
                    raise EmbeddingError(f"Cannot read {self.folder / EMBEDDINGS_FILE}: {error}. Re-distill it.") from error
                if table.ndim != 2 or table.shape[1] != self.info.dim:
                    raise EmbeddingError(
                        f"{self.folder / EMBEDDINGS_FILE} holds shape {table.shape}, but {ENCODER_FILE} says dim "
                        f"{self.info.dim}; re-distill the encoder."
                    )
                tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
                tokenizer.no_padding()
                if self.info.truncation == "head":
                    tokenizer.enable_truncation(self.info.max_tokens)
                else:
                    tokenizer.no_truncation()  # cut in token_ids(), keeping both ends
                self._known = _known_ids(tokenizer, tokenizer.get_vocab_size())
                self._tokenizer = tokenizer
                self._table = table
            return self._table, self._tokenizer

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, as the table is indexed (no special tokens, no unknown token)."""
        _, tokenizer = self._load()
        if self.info.truncation == "head_tail":
            rows = head_and_tail_tokens(tokenizer, texts, self.info.max_tokens)
            if self.shared_rows is not None:
                self.shared_rows.put(texts, rows)
        else:
            rows = [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        known = self._known
        return rows if known is None else [[i for i in row if known[i]] for row in rows]

    def share_tokens(self, encoder: OnnxEncoder) -> bool:
        """Tokenize with `encoder`'s tokenizer from now on, and leave it each text's tokens to reuse.

        Possible when both cut head and tail, `encoder` keeps no more tokens than this encoder (the
        ends of this encoder's row are then its own), and the two tokenizers split text alike (same
        normaliser, pre-tokeniser and WordPiece settings, every token of this vocabulary in
        `encoder`'s: the distilled vocabulary is MiniLM's without `[unused*]`). The table is re-indexed
        by `encoder`'s ids, so vectors do not change (except for a text spelling out a special
        token, which one tokenizer keeps whole and the other splits). Returns whether it shares.
        """
        table, own = self._load()
        keep, theirs = encoder.content_tokens, encoder.tokenizer
        mine = self.info.max_tokens
        if not (self.info.truncation == encoder.info.truncation == "head_tail" and keep <= mine
                and keep // 2 <= mine // 2 and _same_splitting(own, theirs)):
            return False
        their_ids = theirs.get_vocab()
        own_ids = own.get_vocab()
        if any(token not in their_ids for token in own_ids):
            return False
        known = self._known if self._known is not None else np.ones(len(table), dtype=bool)
        size = theirs.get_vocab_size()
        shared_table = np.zeros((size, table.shape[1]), dtype=table.dtype)
        shared_known = np.zeros(size, dtype=bool)
        for token, own_id in own_ids.items():
            shared_table[their_ids[token]] = table[own_id]
            shared_known[their_ids[token]] = known[own_id]
        rows = TokenRows(mine)
        with self._load_lock:
            self._table, self._tokenizer, self._known = shared_table, theirs, shared_known
            self.shared_rows = encoder.shared_rows = rows
        return True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return L2-normalised float32 vectors of shape (len(texts), dim)."""
        table, _ = self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, ids in enumerate(self.token_ids(texts)):
            if ids:
                out[row] = table[ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def _known_ids(tokenizer: Tokenizer, size: int) -> np.ndarray:
    """True for every id but the unknown token's (model2vec drops it from the mean)."""
    known = np.ones(size, dtype=bool)
    unknown = getattr(tokenizer.model, "unk_token", None)
    unknown_id = tokenizer.token_to_id(unknown) if unknown else None
    if unknown_id is not None:
        known[unknown_id] = False
    return known


def _same_splitting(one: Tokenizer, other: Tokenizer) -> bool:
    """Whether two tokenizers cut text into the same token strings (their vocabularies aside)."""
    first, second = json.loads(one.to_str()), json.loads(other.to_str())
    model_keys = ("type", "unk_token", "continuing_subword_prefix", "max_input_chars_per_word")
    return (
        all(first.get(key) == second.get(key) for key in ("normalizer", "pre_tokenizer"))
        and all(first["model"].get(key) == second["model"].get(key) for key in model_keys)
    )
