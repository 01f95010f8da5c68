"""A sentence encoder served by onnxruntime and `tokenizers` alone: no torch at serving time.

The shipped encoder (data/encoders/minilm-l6-layer1-ffn64-int8/) is the packaged all-MiniLM-L6-v2's
first layer, 64 of its 1,536 feed-forward neurons kept, exported to ONNX with mean pooling and L2
normalisation inside the graph, and with int8 weights (see data/encoders/export.py for why). A folder holds `model.onnx`, `tokenizer.json` and `encoder.json`:

    {"name": "all-MiniLM-L6-v2-onnx-int8", "dim": 384, "max_tokens": 256, "truncation": "head", ...}

`truncation` says which tokens of a longer text are kept: "head" (the first `max_tokens`, as
sentence-transformers cuts) or "head_tail" (the first and last halves: a question's end, where
its ask and its answer options are, predicts difficulty as much as its start).

Texts go through onnxruntime one per call by default. Dynamic int8 quantisation scales each
call's activations by their own range, so a text padded into a batch gets a slightly different
vector (cosine ~0.99) than alone; one text per call keeps a text's vector a function of the text,
which the embedding cache and the classifier trained on these vectors rely on.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import EmbeddingError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from classifiers.embedding_cache import EmbeddingCache

ENCODER_FILE = "encoder.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class OnnxEncoderInfo:
    """What `encoder.json` says about an exported encoder."""

    name: str
    dim: int
    max_tokens: int
    truncation: str = "head"


TRUNCATIONS = ("head", "head_tail")
# Load-time fusions that would undo an export's choice: data/encoders/export.py writes the residual
# sums and layer norms as Add + LayerNormalization, 5x faster in onnxruntime 1.32 than the
# SkipLayerNormalization this fusion makes of them (unfuse_skip_layer_norm there).
UNFUSED_OPTIMIZERS = ("SkipLayerNormFusion",)
# A head-and-tail cut reads this many characters at each end of a longer text (head_and_tail_tokens):
# 32 tokens of English take ~150; an end that yields fewer tokens falls back to the whole text.
_END_CHARS = 256
_SPACES = (" ", "\n", "\t")


def _ends(ids: Sequence[int], keep: int) -> list[int]:
    """The first `keep // 2` and the last `keep - keep // 2` ids (all of them when they fit)."""
    first = keep // 2
    return list(ids) if len(ids) <= keep else [*ids[:first], *ids[len(ids) - (keep - first) :]]


def head_and_tail(ids: Sequence[int], limit: int) -> list[int]:
    """The first token, the body's first and last tokens, and the last token: `limit` in all (unchanged when they fit)."""
    if len(ids) <= limit:
        return list(ids)
    return [ids[0], *_ends(ids[1:-1], limit - 2), ids[-1]]


def head_and_tail_tokens(
    tokenizer: Tokenizer, texts: Sequence[str], limit: int, specials: tuple[list[int], list[int]] = ([], [])
) -> list[list[int]]:
    """Per text, the ids `head_and_tail` keeps of it: the first and last halves of `limit` tokens,
    between `specials` (e.g. ([CLS], [SEP]), which count in `limit`); only a long text's ends are tokenized.

    BERT's normaliser and pre-tokeniser work word by word, so the first characters of a text, cut
    at a space, give the same first tokens as the whole text does (and the last ones the same last
    tokens): a 10,000-character prompt costs what a 600-character one does. Where an end gives
    fewer tokens than are kept of it, the whole text is tokenized. One `encode_batch` call for all
    the texts: it releases the GIL (`encode` holds it), so a tokenizing worker thread leaves the
    proxy's event loop free, and it takes the GIL back once, not once per text.
    """
    opening, closing = specials
    keep = limit - len(opening) - len(closing)
    first, last = keep // 2, keep - keep // 2
    pieces: list[str] = []
    for text in texts:
        if len(text) > 2 * _END_CHARS:
            head, tail = text[:_END_CHARS], text[-_END_CHARS:]
            head = head[: max(head.rfind(c) for c in _SPACES) + 1]
            tail = tail[min((i for i in (tail.find(c) for c in _SPACES) if i >= 0), default=len(tail)) :]
            pieces += [head, tail]
        else:
            pieces.append(text)
    encoded = iter([e.ids for e in tokenizer.encode_batch(pieces, add_special_tokens=False)])
    rows = []
    for text in texts:
        if len(text) > 2 * _END_CHARS:
            head_ids, tail_ids = next(encoded), next(encoded)
            if len(head_ids) >= first and len(tail_ids) >= last:
                rows.append([*opening, *head_ids[:first], *tail_ids[len(tail_ids) - last :], *closing])
                continue
            ids = tokenizer.encode_batch([text], add_special_tokens=False)[0].ids
        else:
            ids = next(encoded)
        rows.append([*opening, *_ends(ids, keep), *closing])
    return rows


class TokenRows:
    """The content ids (no special tokens) of recent texts, cut to their first and last halves of
    `keep`: one tokenization serves both stages of a two-stage decision (classifiers.two_stage).

    The first stage tokenizes every text and puts its row here; the transformer then reads the
    rows of the texts near a threshold instead of tokenizing them again (0.35-0.4 ms a prompt on
    2 cores). Bounded: the oldest rows go first once `capacity` are kept; a batch's worth is enough
    (a miss only costs a tokenization), and each kept row keeps its text alive.
    """

    def __init__(self, keep: int, capacity: int = 256) -> None:
        self.keep = keep
        self.capacity = capacity
        self._rows: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def put(self, texts: Sequence[str], rows: Sequence[list[int]]) -> None:
        """Keep each text's row (rows cut to `keep` as `head_and_tail_tokens` cuts)."""
        with self._lock:
            for text, row in zip(texts, rows, strict=True):
                self._rows.pop(text, None)
                self._rows[text] = row
            while len(self._rows) > self.capacity:
                del self._rows[next(iter(self._rows))]

    def get(self, text: str) -> list[int] | None:
        """The row kept for `text`, if any."""
        return self._rows.get(text)

    def __len__(self) -> int:
        return len(self._rows)


Specials = tuple[list[int], list[int]]  # the ids a tokenizer puts before and after a text


def cutting_tokenizer(path: Path, max_tokens: int, truncation: str) -> tuple[Tokenizer, Specials]:
    """The tokenizer at `path`, unpadded, cutting as `truncation` says (`token_rows` finishes a
    head-and-tail cut), and the special ids it puts around a text ([CLS], [SEP] for BERT)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    if truncation == "head":
        tokenizer.enable_truncation(max_tokens)  # as sentence-transformers does: cut at max_seq_length
    else:
        tokenizer.no_truncation()  # cut in token_rows, keeping both ends
    tokenizer.no_padding()
    around = tokenizer.encode_batch([""])[0].ids
    return tokenizer, (around[:1], around[1:])


def token_rows(
    tokenizer: Tokenizer, specials: Specials, texts: Sequence[str], max_tokens: int, truncation: str
) -> list[list[int]]:
    """Per text, the ids the encoder reads, special tokens included, `max_tokens` at most (a `cutting_tokenizer`)."""
    if truncation == "head_tail":
        return head_and_tail_tokens(tokenizer, texts, max_tokens, specials)
    return [e.ids for e in tokenizer.encode_batch(list(texts))]


def padded(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ids padded with 0 ([PAD]) to the longest row, and the attention mask (int64, as the graph takes them)."""
    width = max(len(row) for row in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def read_encoder_info(folder: Path) -> OnnxEncoderInfo:
    """Parse `encoder.json` of an exported encoder folder."""
    path = folder / ENCODER_FILE
    try:
        raw = json.loads(path.read_text())
        info = OnnxEncoderInfo(
            name=str(raw["name"]), dim=int(raw["dim"]), max_tokens=int(raw["max_tokens"]),
            truncation=str(raw.get("truncation", "head")),
        )
    except FileNotFoundError as error:
        raise EmbeddingError(
            f"{folder} is not an exported encoder: {ENCODER_FILE} is missing. "
            "Export one with `python data/encoders/export.py --out DIR`."
        ) from error
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise EmbeddingError(f"{path} lacks or mistypes a field ({error}); re-export the encoder.") from error
    if info.truncation not in TRUNCATIONS or info.max_tokens < 3:
        raise EmbeddingError(
            f"{path}: truncation must be one of {', '.join(TRUNCATIONS)} and max_tokens at least 3; "
            f"got {info.truncation!r} and {info.max_tokens}. Re-export the encoder."
        )
    return info


def is_onnx_encoder_folder(path: Path) -> bool:
    """True when `path` is a folder written by the ONNX export."""
    return (path / ENCODER_FILE).is_file()


@dataclass
class StageTimes:
    """Seconds spent per stage of encoding, summed over calls (for benchmarks)."""

    tokenize: float = 0.0
    encode: float = 0.0
    texts: int = 0


class OnnxEncoder:
    """Embeds texts with an exported ONNX sentence encoder; L2-normalised float32 vectors."""

    def __init__(
        self,
        folder: str | Path,
        *,
        threads: int | None = None,
        batch_size: int = 1,
        cache: EmbeddingCache | None = None,
        show_progress: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.info = read_encoder_info(self.folder)
        self.name = self.info.name
        self.threads = threads
        self.batch_size = batch_size
        self.cache = cache
        self.show_progress = show_progress
        self.times = StageTimes()
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self._specials: Specials = ([], [])
        self._load_lock = threading.Lock()
        # Set by a first stage that tokenizes with this encoder's tokenizer (StaticEncoder.share_tokens).
        self.shared_rows: TokenRows | None = None

    @property
    def dim(self) -> int:
        """Width of the vectors."""
        return self.info.dim

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer, unpadded, cutting nothing itself (head_tail) or at `max_tokens` (head)."""
        return self._load()[1]

    @property
    def content_tokens(self) -> int:
        """Tokens kept of a text's own, between the special tokens (`max_tokens` counts those too)."""
        self._load()  # the special tokens are read with the tokenizer
        opening, closing = self._specials
        return self.info.max_tokens - len(opening) - len(closing)

    def _load(self) -> tuple[Any, Tokenizer]:
        if self._session is not None and self._tokenizer is not None:
            return self._session, self._tokenizer  # loaded: no lock on the hot path
        with self._load_lock:
            if self._session is None or self._tokenizer is None:
                try:
                    import onnxruntime
                    import tokenizers  # noqa: F401 - checked here, used by cutting_tokenizer
                except ImportError as error:
                    raise EmbeddingError(
                        f"The ONNX encoder needs onnxruntime and tokenizers ({error}); reinstall difficulty-router."
                    ) from error
                options = onnxruntime.SessionOptions()
                if self.threads is not None:
                    # With more threads than idle cores, workers spin against the proxy's event loop.
                    options.intra_op_num_threads = self.threads
                    options.inter_op_num_threads = 1
                    if self.threads > 1:
                        # A caller that sets threads (the proxy) runs the encoder between other work: a
                        # worker spinning after each call would take the core that work needs next.
                        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

                for name in (MODEL_FILE, TOKENIZER_FILE):
                    if not (self.folder / name).is_file():
                        raise EmbeddingError(f"{self.folder / name} is missing; re-export the encoder or reinstall.")
                try:
                    self._session = onnxruntime.InferenceSession(
                        str(self.folder / MODEL_FILE), options, providers=["CPUExecutionProvider"],
                        disabled_optimizers=list(UNFUSED_OPTIMIZERS),
                    )
                except (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.Fail) as error:
                    raise EmbeddingError(f"Cannot load {self.folder / MODEL_FILE}: {error}. Re-export it.") from error
                tokenizer, self._specials = cutting_tokenizer(
                    self.folder / TOKENIZER_FILE, self.info.max_tokens, self.info.truncation
                )
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts, reading and filling the cache when one is set."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache is None:
            return self._embed(texts)
        cached = self.cache.get_many(self.name, texts)
        missing = [i for i, vector in enumerate(cached) if vector is None]
        if missing:
            fresh = self._embed([texts[i] for i in missing])
            self.cache.put_many(self.name, [texts[i] for i in missing], fresh)
            for position, vector in zip(missing, fresh, strict=True):
                cached[position] = vector
        return np.stack([np.asarray(vector, dtype=np.float32) for vector in cached if vector is not None])

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, cut to `max_tokens` as `truncation` says and padded to the longest text."""
        _, tokenizer = self._load()
        shared = self.shared_rows
        if shared is None:
            return padded(token_rows(tokenizer, self._specials, texts, self.info.max_tokens, self.info.truncation))
        opening, closing = self._specials
        keep = self.content_tokens
        rows: list[list[int]] = []
        missing: list[int] = []
        for text in texts:
            row = shared.get(text)
            if row is None:
                missing.append(len(rows))
                rows.append([])
            else:
                # A shared row holds the ends of up to `shared.keep` content tokens; this encoder keeps
                # the ends of `keep` <= that many, which are the ends of the shared row (share_tokens checks).
                rows.append([*opening, *_ends(row, keep), *closing])
        if missing:
            fresh = token_rows(tokenizer, self._specials, [texts[i] for i in missing], self.info.max_tokens, self.info.truncation)
            for i, row in zip(missing, fresh, strict=True):
                rows[i] = row
        return padded(rows)

    def embed_tokens(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The normalised vectors of tokenised texts: one onnxruntime call."""
        session, _ = self._load()
        return np.asarray(session.run(None, {"input_ids": ids, "attention_mask": mask})[0], dtype=np.float32)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts: Iterable[int] = range(0, len(texts), self.batch_size)
        if self.show_progress and len(texts) > 256:
            from tqdm import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch", total=math.ceil(len(texts) / self.batch_size))
        began = time.perf_counter()
        # Every text's tokens in one call (the GIL is released and taken back once), then padded per chunk.
        ids, mask = self.tokenize(texts)
        lengths = mask.sum(axis=1)
        self.times.tokenize += time.perf_counter() - began
        for start in starts:
            began = time.perf_counter()
            width = int(lengths[start : start + self.batch_size].max())
            chunk = slice(start, start + self.batch_size)
            out[chunk] = self.embed_tokens(ids[chunk, :width], mask[chunk, :width])
            self.times.encode += time.perf_counter() - began
            self.times.texts += len(ids[chunk])
        return out
