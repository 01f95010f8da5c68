"""The two-stage decision on RouteLLM's outcomes: 5-fold CV APGR of the whole beside the transformer alone.

    python bench/two_stage.py [--data ../shared/data/routellm/outcomes.jsonl] [--score gain]
        [--first all-MiniLM-L6-v2-static] [--first-model logreg] [--second all-MiniLM-L6-v2-onnx-int8]
        [--reference sentence-transformers/all-MiniLM-L6-v2] [--disagreement 0.002,0.005,0.01,0.02]
        [--write data/classifier-static]

Embeds every prompt once per encoder (the ONNX and torch vectors come from the embedding cache
after the first run) and computes out-of-fold scores, on the same folds, of the second stage (the
shipped ensemble on the transformer) and of the first (logistic regression on the static encoder,
C=3: a dot product, where a kNN would cost more for the same share). The first stage learns the
second's probabilities (`--first-target second`, the default): per test fold, its targets are the
second stage's out-of-fold probabilities within the training folds (inner folds), so no held-out
outcome reaches it. Then for each disagreement:
  - the routing curve of the two-stage decision: at each strong share f of RouteLLM's 101, the
    cut is the transformer's score quantile for f; the margin at that cut is calibrated per test
    fold on the other folds' out-of-fold scores (cross-fitting: a fold's margin never sees its
    own rows), as classifiers.two_stage.calibrate_margin does in the proxy; the first stage
    decides where it is farther than the margin from the cut, the transformer elsewhere;
    APGR is the area under PGR over the realised strong share;
  - the share of prompts the first stage decides, and how often its decision differs from the
    transformer's (both averaged over the 101 cuts), and the same at the cut of share 0.5.
The transformer alone and the full-precision reference are put through the same curve code, and
their standard APGR (core.metrics) printed beside it. `--write DIR` fits the first stage on all
rows and saves it with both stages' out-of-fold scores of both kinds (two_stage.npz), from which
the proxy calibrates margins at the live policy's cuts. The last line is the headline figure.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifiers.embedding_cache import EmbeddingCache
from classifiers.estimator import DifficultyClassifier
from classifiers.encoders import DEFAULT_EMBEDDING_MODEL, MINILM, STATIC_EMBEDDING_MODEL, make_encoder
from classifiers.loaders import load_records
from classifiers.selection import ENSEMBLE, fold_splits, out_of_fold_proba
from classifiers.targets import TrainingSet, training_set
from classifiers.two_stage import calibrate_margin, decided_by_first, write_two_stage
from core.metrics import FRACTIONS, apgr

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm" / "outcomes.jsonl"
PARAMS: dict[str, object] = {**ENSEMBLE, "random_state": 0}


def scores_of(proba: np.ndarray, kind: str) -> np.ndarray:
    """The policy's score from success probabilities, as DifficultyClassifier.predict_score computes it."""
    if kind == "gain":
        return np.asarray(np.clip(proba[:, -1] - proba[:, 0], 0.0, 1.0), dtype=float)
    return np.asarray(1.0 - proba[:, 0], dtype=float)


def cut_for_share(second: np.ndarray, share: float) -> float:
    """The cut at which the transformer alone sends `share` of the prompts to the strong tier."""
    n = len(second)
    taken = int(np.floor(share * n + 1e-9))
    if taken == 0:
        return float(np.inf)
    return float(np.sort(second)[::-1][taken - 1])


def curve(
    first: np.ndarray, second: np.ndarray, fold: np.ndarray, weak: np.ndarray, strong: np.ndarray, disagreement: float | None
) -> tuple[float, float, float, dict[str, float]]:
    """APGR of the two-stage decision over RouteLLM's shares; mean first-stage share and disagreement; at f=0.5.

    `fold` numbers each row's test fold; the margin of a row at a cut is calibrated on the other
    folds' rows. `disagreement` None: the transformer alone; 1: the first stage alone.
    """
    gap = strong.mean() - weak.mean()
    shares, pgrs, firsts, differs = [0.0], [0.0], [], []
    at_half: dict[str, float] = {}
    for f in FRACTIONS:
        cut = cut_for_share(second, float(f))
        alone = second >= cut
        if disagreement is None or not np.isfinite(cut):
            decided = np.zeros(len(first), dtype=bool)
        elif disagreement >= 1.0:
            decided = np.ones(len(first), dtype=bool)
        else:
            decided = np.zeros(len(first), dtype=bool)
            for k in np.unique(fold):
                test = fold == k
                margin = calibrate_margin(first[~test], second[~test], cut, disagreement)
                decided[test] = decided_by_first(first[test], [cut], [margin])
        routed = np.where(decided, first >= cut, alone)
        shares.append(float(routed.mean()))
        pgrs.append(float(((strong - weak) * routed).mean() / gap))
        firsts.append(float(decided.mean()))
        differs.append(float((routed != alone).mean()))
        if abs(f - 0.5) < 1e-9:
            at_half = {"first": firsts[-1], "differ": differs[-1]}
    shares.append(1.0)
    pgrs.append(1.0)
    order = np.argsort(shares, kind="stable")
    area = float(np.trapezoid(np.asarray(pgrs)[order], np.asarray(shares)[order]))
    return area, float(np.mean(firsts)), float(np.mean(differs)), at_half


def at_cuts(
    first: np.ndarray, second: np.ndarray, fold: np.ndarray, cuts: Sequence[float], disagreement: float
) -> tuple[float, float]:
    """At a policy's fixed cuts: the share the first stage decides, and the share whose band differs from the transformer's."""
    decided = np.zeros(len(first), dtype=bool)
    for k in np.unique(fold):
        test = fold == k
        margins = [calibrate_margin(first[~test], second[~test], cut, disagreement) for cut in cuts]
        decided[test] = decided_by_first(first[test], cuts, margins)
    edges = np.asarray(cuts, dtype=float)
    band = np.searchsorted(edges, np.where(decided, first, second), side="right")
    return float(decided.mean()), float((band != np.searchsorted(edges, second, side="right")).mean())


def embed(name: str, texts: list[str]) -> np.ndarray:
    """Every prompt's vector, from the embedding cache where it holds them (not for the static encoder: 0.1 ms each)."""
    encoder = make_encoder(name, cache=None if name == STATIC_EMBEDDING_MODEL else EmbeddingCache(), threads=1)
    start = time.perf_counter()
    vectors = encoder.encode(texts)
    print(f"{name}: embedded {len(texts)} prompts in {time.perf_counter() - start:.1f}s (cached ones free)", flush=True)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--score", choices=("gain", "difficulty"), default="gain")
    parser.add_argument("--first", default=STATIC_EMBEDDING_MODEL, help="the first stage's (static) encoder")
    parser.add_argument("--first-model", choices=("logreg", "ensemble"), default="logreg", help="the first stage's model")
    # On the outcomes, stronger regularisation than the transformer's C=1 pulled the static scores
    # toward the prior, away from a threshold (C=0.3 decided 58% alone at difficulty 0.5, C=1 57%).
    # The second stage's probabilities are smooth targets: C=3 decides 61.1%, C=0.3 60.0%.
    parser.add_argument("--first-c", type=float, default=3.0, help="the first stage's inverse regularisation")
    # The first stage's job is to agree with the second, so by default it learns the second's
    # out-of-fold probabilities (distillation), not the outcomes: at difficulty 0.5 it then decides
    # 61.1% alone (C=3) against 58.3% (outcomes, C=0.3), with the same disagreement and APGR.
    parser.add_argument("--first-target", choices=("outcomes", "second"), default="second",
                        help="what the first stage learns: the second stage's out-of-fold probabilities, or the outcomes")
    parser.add_argument("--second", default=DEFAULT_EMBEDDING_MODEL, help="the second stage's (transformer) encoder")
    parser.add_argument("--reference", default=MINILM, help="full-precision encoder to compare with ('' to skip)")
    parser.add_argument("--disagreement", default="0.002,0.005,0.01,0.02",
                        help="shares of prompts the first stage may decide differently, per cut, to try")
    parser.add_argument("--cuts", default="", help="a policy's thresholds (e.g. 0.5): also report the shares at these cuts")
    parser.add_argument("--write", type=Path, default=None, help="fit the first stage on all rows and save it here")
    parser.add_argument("--at", type=float, default=0.01, help="the disagreement of the headline figure")
    args = parser.parse_args()

    data = training_set(load_records(args.data).records)
    weak, strong = data.targets[:, 0], data.targets[:, -1]
    groups = np.array([s.split("/", 1)[0] for s in data.sources])
    splits = fold_splits(data.targets, data.sources, args.folds, seed=0)

    encoders = {"first": args.first, "second": args.second} | ({"reference": args.reference} if args.reference else {})
    proba: dict[str, np.ndarray] = {}
    vectors: dict[str, np.ndarray] = {}
    for role, name in encoders.items():
        vectors[role] = embed(name, data.texts)
    for role, name in encoders.items():  # after every embedding: the distilled first stage reads the second's vectors
        start = time.perf_counter()
        if role == "first" and args.first_target == "second":
            proba[role] = distilled_out_of_fold(args, data, vectors, splits)
        else:
            params = {**PARAMS, "model": args.first_model, "C": args.first_c} if role == "first" else PARAMS
            proba[role] = out_of_fold_proba(params, vectors[role], data.targets, data.sources, splits=splits)
        print(f"{role} ({name}): {args.folds}-fold CV in {time.perf_counter() - start:.1f}s", flush=True)
    score = {role: scores_of(p, args.score) for role, p in proba.items()}

    fold = np.empty(len(weak), dtype=int)
    for number, (_, test) in enumerate(splits):
        fold[test] = number
    rows: list[tuple[str, dict[str, tuple[float, float, float, dict[str, float]]]]] = []

    def per_group(first: np.ndarray, second: np.ndarray, disagreement: float | None) -> dict[str, tuple[float, float, float, dict[str, float]]]:
        return {g: curve(first[groups == g], second[groups == g], fold[groups == g], weak[groups == g], strong[groups == g], disagreement)
                for g in ("gsm8k", "mmlu")}

    if "reference" in score:
        rows.append((f"reference alone ({args.reference.rsplit('/', 1)[-1]})", per_group(score["reference"], score["reference"], None)))
    rows.append((f"second alone ({args.second})", per_group(score["first"], score["second"], None)))
    rows.append((f"first alone ({args.first}, {args.first_model} C={args.first_c:g})", per_group(score["first"], score["second"], 1.0)))
    for text in args.disagreement.split(","):
        rows.append((f"two-stage, disagreement {float(text):g}", per_group(score["first"], score["second"], float(text))))

    print(f"score: {args.score}; standard APGR (core.metrics) "
          + "; ".join(f"{role} {' / '.join(f'{apgr(score[role][groups == g], weak[groups == g], strong[groups == g]):.3f}' for g in ('gsm8k', 'mmlu'))}"
                      for role in score))
    print(f"{'decision':58s}{'gsm8k APGR':>11s}{'mmlu APGR':>11s}{'1st share':>11s}{'differ':>9s}{'1st@f.5':>9s}{'diff@f.5':>9s}")
    for name, result in rows:
        n_g, n_m = (groups == "gsm8k").sum(), (groups == "mmlu").sum()
        share = (result["gsm8k"][1] * n_g + result["mmlu"][1] * n_m) / (n_g + n_m)
        differ = (result["gsm8k"][2] * n_g + result["mmlu"][2] * n_m) / (n_g + n_m)
        half = {k: (result["gsm8k"][3][k] * n_g + result["mmlu"][3][k] * n_m) / (n_g + n_m) for k in ("first", "differ")}
        print(f"{name:58s}{result['gsm8k'][0]:11.3f}{result['mmlu'][0]:11.3f}{share:11.3f}{differ:9.4f}"
              f"{half['first']:9.3f}{half['differ']:9.4f}")

    if args.cuts:
        cuts = sorted(float(c) for c in args.cuts.split(","))
        for text in args.disagreement.split(","):
            cells = []
            for g in ("gsm8k", "mmlu", "all"):
                mask = np.ones(len(weak), dtype=bool) if g == "all" else groups == g
                share, differ = at_cuts(score["first"][mask], score["second"][mask], fold[mask], cuts, float(text))
                cells.append(f"{g} first stage decides {share:.3f}, band differs {differ:.4f}")
            print(f"at cuts {cuts}, disagreement {float(text):g}: " + "; ".join(cells))

    if args.write is not None:
        write_first_stage(args, data, vectors["first"], proba)
    best = [r for r in rows if r[0].startswith(f"two-stage, disagreement {args.at:g} ")]
    if best:
        name, result = best[0]
        second = rows[1 if "reference" in score else 0][1]
        print(f"FIGURE {args.folds}-fold CV APGR by {args.score}, GSM8K / MMLU: two-stage at disagreement {args.at:g} "
              f"{result['gsm8k'][0]:.3f} / {result['mmlu'][0]:.3f}; {args.second} alone {second['gsm8k'][0]:.3f} / "
              f"{second['mmlu'][0]:.3f}" + (f"; reference {rows[0][1]['gsm8k'][0]:.3f} / {rows[0][1]['mmlu'][0]:.3f}"
                                              if "reference" in score else ""))


def distilled_out_of_fold(
    args: argparse.Namespace, data: TrainingSet, vectors: dict[str, np.ndarray], splits: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """The first stage's out-of-fold probabilities when it learns the second stage's: per fold, its
    targets are the second stage's out-of-fold probabilities within the training folds only."""
    first_params = {**PARAMS, "model": args.first_model, "C": args.first_c}
    proba = np.empty_like(data.targets, dtype=np.float64)
    sources = np.asarray(data.sources)
    for train, test in splits:
        inner = fold_splits(data.targets[train], list(sources[train]), args.folds, seed=0)
        taught = out_of_fold_proba(PARAMS, vectors["second"][train], data.targets[train], list(sources[train]), splits=inner)
        model = DifficultyClassifier(**first_params).fit_embeddings(vectors["first"][train], taught)  # type: ignore[arg-type]
        proba[test] = model.predict_proba_embeddings(vectors["first"][test])
    return proba


def write_first_stage(args: argparse.Namespace, data: TrainingSet, vectors: np.ndarray, proba: dict[str, np.ndarray]) -> None:
    """Fit the first stage on all rows; save it as an artifact with both stages' out-of-fold scores."""
    from classifiers.artifact import save_classifier
    from classifiers.estimator import DifficultyClassifier
    from classifiers.training import data_hash

    classifier = DifficultyClassifier(make_encoder(args.first), **{**PARAMS, "model": args.first_model, "C": args.first_c})
    # Taught by the second stage: its out-of-fold probabilities, which is how it scores a prompt it never saw.
    classifier.fit_embeddings(vectors, proba["second"] if args.first_target == "second" else data.targets, data.tiers)
    digest = data_hash(data)
    save_classifier(
        classifier, args.write, label_definition=data.label_definition,
        training={"files": [str(args.data)], "rows": len(vectors), "data_sha256": digest, "folds": args.folds, "seed": 0,
                  "targets": "the second stage's out-of-fold probabilities" if args.first_target == "second" else "outcomes"},
        cv_metrics={},
    )
    kinds = ("difficulty", "gain")
    write_two_stage(
        args.write, {k: scores_of(proba["first"], k) for k in kinds}, {k: scores_of(proba["second"], k) for k in kinds},
        {"embedding_model": args.second, "data_sha256": digest},
        command=f"python bench/two_stage.py --first-model {args.first_model} --first-c {args.first_c:g} "
        f"--first-target {args.first_target} --write {args.write}",
    )
    print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
