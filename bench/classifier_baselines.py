"""5-fold CV routing quality on RouteLLM's outcomes: our classifier beside the baselines.

    python bench/classifier_baselines.py [--data ../shared/data/routellm/outcomes.jsonl] [--limit N]
        [--encoders all-MiniLM-L6-v2-onnx-int8,sentence-transformers/all-MiniLM-L6-v2]

Compares, on the same folds in one run: plain logistic regression on the first encoder's
embeddings, kNN on the same embeddings, our ensemble (ranked by difficulty and by the predicted
gain P(strong) - P(weak)) on every encoder named, and LiteLLM's rule-based ComplexityRouter
(`classify` score). The default compares the served encoder (ONNX, int8 weights) with the
full-precision MiniLM in torch, which needs the `train` extra. Prints APGR and CPT(50%) per source
(gsm8k, mmlu) and overall; the last line is the headline figure, the encoders side by side.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from classifiers.embedding_cache import EmbeddingCache
from classifiers.encoders import DEFAULT_EMBEDDING_MODEL, MINILM, make_encoder
from classifiers.loaders import load_records
from classifiers.selection import ENSEMBLE, KNN_DIMS, out_of_fold_proba
from classifiers.targets import training_set
from core.metrics import apgr, cpt

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm" / "outcomes.jsonl"


def litellm_complexity_scores(prompts: list[str]) -> np.ndarray:
    """LiteLLM ComplexityRouter's raw weighted score per prompt (higher = more complex)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from unittest.mock import MagicMock

    from litellm.router_strategy.complexity_router.complexity_router import ComplexityRouter

    router = ComplexityRouter(model_name="bench", litellm_router_instance=MagicMock())
    return np.array([router.classify(prompt)[1] for prompt in prompts], dtype=float)


def _cell(value: float | None, digits: int, width: int = 13) -> str:
    """A metric right-aligned in its column; "-" where it is undefined (no gap between the tiers)."""
    return f"{'-' if value is None else f'{value:.{digits}f}':>{width}s}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N rows (quick runs)")
    parser.add_argument(
        "--encoders", default=f"{DEFAULT_EMBEDDING_MODEL},{MINILM}",
        help="comma-separated encoder names (see classifiers.encoders.make_encoder); the first gets the baselines",
    )
    args = parser.parse_args()

    records = load_records(args.data).records
    if args.limit:
        records = records[: args.limit]
    data = training_set(records)
    weak, strong = data.targets[:, 0], data.targets[:, 1]
    groups = np.array([s.split("/", 1)[0] for s in data.sources])

    encoders = [name.strip() for name in args.encoders.split(",") if name.strip()]
    scores: dict[str, np.ndarray] = {}
    headline: list[str] = []
    for position, encoder_name in enumerate(encoders):
        short = "onnx-int8" if encoder_name == DEFAULT_EMBEDDING_MODEL else encoder_name.rsplit("/", 1)[-1]
        encoder = make_encoder(encoder_name, cache=EmbeddingCache(), show_progress=True)
        start = time.perf_counter()
        embeddings = encoder.encode(data.texts)
        print(f"{encoder_name}: embedded {len(data.texts)} prompts in {time.perf_counter() - start:.1f}s (cached ones free)")
        kinds: dict[str, dict[str, object]] = {"ensemble": dict(ENSEMBLE)}
        if position == 0:
            kinds = {"logreg": {"model": "logreg", "C": 1.0}, "kNN k=100": {"model": "knn", "n_neighbors": 100, "knn_dims": KNN_DIMS}, **kinds}
        for kind, params in kinds.items():
            start = time.perf_counter()
            proba = out_of_fold_proba(params, embeddings, data.targets, data.sources, args.folds, seed=0)
            print(f"{kind} on {short}: {args.folds}-fold CV in {time.perf_counter() - start:.1f}s")
            if params["model"] == "ensemble":
                scores[f"ours: ensemble, gain ({short})"] = proba[:, 1] - proba[:, 0]
                scores[f"ours: ensemble, difficulty ({short})"] = 1.0 - proba[:, 0]
                headline.append(f"ours: ensemble, gain ({short})")
            else:
                scores[f"{kind} ({short}, difficulty)"] = 1.0 - proba[:, 0]
    start = time.perf_counter()
    scores["LiteLLM ComplexityRouter"] = litellm_complexity_scores(data.texts)
    print(f"LiteLLM ComplexityRouter scored in {time.perf_counter() - start:.1f}s")
    scores["random"] = np.random.default_rng(0).random(len(data.texts))

    header = f"{'router':40s}" + "".join(f"{g + ' APGR':>13s}{g + ' CPT50':>13s}" for g in ("gsm8k", "mmlu", "all"))
    print(header)
    for name, score in scores.items():
        cells = []
        for group in ("gsm8k", "mmlu", "all"):
            mask = np.ones(len(score), bool) if group == "all" else groups == group
            cells.append(_cell(apgr(score[mask], weak[mask], strong[mask]), 3))
            cells.append(_cell(cpt(score[mask], weak[mask], strong[mask], 0.5), 2))
        print(f"{name:40s}" + "".join(cells))

    def by_source(name: str) -> str:
        score = scores[name]
        values = [apgr(score[groups == g], weak[groups == g], strong[groups == g]) for g in ("gsm8k", "mmlu")]
        return " / ".join("n/a" if value is None else f"{value:.3f}" for value in values)

    print(f"FIGURE {args.folds}-fold CV APGR by gain, GSM8K / MMLU: " + "; ".join(f"{name[len('ours: ensemble, gain '):]} "
          f"{by_source(name)}" for name in headline))


if __name__ == "__main__":
    main()
