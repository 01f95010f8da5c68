"""Head-and-tail truncation of long prompts for the ONNX encoder: 5-fold CV APGR beside the served head-only cut.

    python bench/encoder_truncation.py [--data ../shared/data/routellm/outcomes.jsonl] [--limits 128,256]

The served encoder keeps a prompt's first 256 tokens (as sentence-transformers does). MMLU
prompts end with their question and choices, which the head-only cut drops from the longest.
For each limit L this keeps the first and last (L - 2) / 2 tokens between [CLS] and [SEP]
instead, re-embeds only the prompts longer than min(L, 256) (the others get the same tokens either way
and come from the embedding cache), cross-validates the shipped
ensemble on the same folds, and prints APGR by gain and by difficulty per source, the share of
prompts changed and their encode time. A classifier must be retrained on the truncated vectors
to serve them; this measures whether that is worth doing. The last line is the headline figure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from classifiers.embedding_cache import EmbeddingCache
from classifiers.encoders import DEFAULT_EMBEDDING_MODEL, make_encoder
from classifiers.loaders import load_records
from classifiers.onnx_encoder import TOKENIZER_FILE, OnnxEncoder
from classifiers.selection import fold_splits, out_of_fold_proba
from classifiers.targets import training_set
from core.metrics import apgr

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm" / "outcomes.jsonl"
PARAMS: dict[str, object] = {"model": "ensemble", "C": 1.0, "n_neighbors": 100, "random_state": 0}
SERVED_LIMIT = 256


def head_and_tail(ids: list[int], limit: int) -> list[int]:
    """[CLS] + the first and last tokens of the body + [SEP], `limit` in all (ids unchanged when they fit)."""
    if len(ids) <= limit:
        return ids
    body, keep = ids[1:-1], limit - 2
    head = keep // 2
    return [ids[0], *body[:head], *body[len(body) - (keep - head) :], ids[-1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limits", default="128,256", help="token limits to try (head and tail halves)")
    args = parser.parse_args()

    from tokenizers import Tokenizer

    data = training_set(load_records(args.data).records)
    weak, strong = data.targets[:, 0], data.targets[:, -1]
    groups = np.array([s.split("/", 1)[0] for s in data.sources])
    splits = fold_splits(data.targets, data.sources, 5, seed=0)
    encoder = make_encoder(DEFAULT_EMBEDDING_MODEL, cache=EmbeddingCache(), threads=1)
    assert isinstance(encoder, OnnxEncoder)
    served = encoder.encode(data.texts)
    whole = Tokenizer.from_file(str(encoder.folder / TOKENIZER_FILE))
    whole.no_truncation()
    whole.no_padding()
    ids = [e.ids for e in whole.encode_batch(data.texts)]

    variants = {f"head {SERVED_LIMIT} (served)": served}
    for limit in (int(text) for text in args.limits.split(",")):
        vectors, seconds = served.copy(), []
        # A prompt within both the served cut and this limit gets the same tokens either way.
        changed = np.array([len(tokens) > min(limit, SERVED_LIMIT) for tokens in ids])
        for row in np.flatnonzero(changed):
            tokens = ids[row]
            cut = np.array([head_and_tail(tokens, limit)], dtype=np.int64)
            started = time.perf_counter()
            vectors[row] = encoder.embed_tokens(cut, np.ones_like(cut))[0]
            seconds.append(time.perf_counter() - started)
        share = {g: float(changed[groups == g].mean()) for g in ("gsm8k", "mmlu")}
        print(f"head+tail {limit}: {len(seconds)} prompts re-embedded (gsm8k {share['gsm8k']:.1%}, mmlu {share['mmlu']:.1%}), "
              f"encode p50 {np.percentile(seconds, 50) * 1000 if seconds else 0:.1f} ms each", flush=True)
        variants[f"head+tail {limit}"] = vectors

    lines = []
    for name, vectors in variants.items():
        proba = out_of_fold_proba(PARAMS, vectors, data.targets, data.sources, splits=splits)
        cells = []
        for kind, score in (("gain", proba[:, -1] - proba[:, 0]), ("difficulty", 1.0 - proba[:, 0])):
            per = " / ".join(f"{apgr(score[groups == g], weak[groups == g], strong[groups == g]):.3f}" for g in ("gsm8k", "mmlu"))
            cells.append(f"by {kind} {per}")
        print(f"{name:24s} 5-fold CV APGR, GSM8K / MMLU: " + "; ".join(cells), flush=True)
        lines.append(f"{name} {cells[0][len('by gain '):]}")
    print("FIGURE 5-fold CV APGR by gain, GSM8K / MMLU: " + "; ".join(lines))


if __name__ == "__main__":
    main()
