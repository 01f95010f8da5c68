"""Routing quality of every classifier candidate on the same folds, with the issue-12 figures.

    nice -n 10 python bench/routing_quality.py [--data ../shared/data/routellm/outcomes.jsonl]
        [--finetuned bench/out/finetune] [--grouped] [--paired] [--skip-litellm] [--json out.json]

Rows: the shipped classifier (logistic regression + kNN ensemble on the shipped ONNX-int8 encoder,
MiniLM's first layer on 64 tokens, ranked by predicted gain), the same ensemble on each `--also` encoder, kNN alone, logistic regression alone, the ensemble with cheap
request-time features (classifiers.features), with per-source intercepts, and with LiteLLM's rule
score as one more feature, the features alone, LiteLLM's ComplexityRouter, random, and the
fine-tuned encoder's out-of-fold scores when --finetuned names bench/finetune_cv.py's output (then
a second table restricted to the folds it covers, every row on those same rows). Every
model-based score is out of fold on the folds of classifiers.selection.fold_splits (stratified, 5,
seed 0), or grouped_fold_splits with --grouped (whole MMLU subjects held out; GSM8K rows spread
over the folds).

Columns per source: APGR, CPT(50%), and the strong share needed to reach 95% of always-strong
accuracy. Overall: cost per correct answer at 95% of strong quality, from policies.calibrate (the
code behind `router policy calibrate --target-quality 0.95`) on bench/configs/routellm_gain.yaml
with the scores' ranks as the difficulty, as a factor below always-strong's cost per correct
(2.0x = half the cost). --paired adds each candidate's APGR minus the shipped one's per source: pooled, per
fold, and a paired bootstrap 95% interval over rows (300 resamples). Embeddings come from the
on-disk cache, so a rerun costs minutes (about 5 on 2 shared cores), not an hour of encoding.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from classifiers.embedding_cache import EmbeddingCache
from classifiers.encoders import DEFAULT_EMBEDDING_MODEL, make_encoder
from classifiers.estimator import DifficultyClassifier
from classifiers.features import FeatureScaler, prompt_features, source_onehot
from classifiers.loaders import load_records
from classifiers.selection import KNN_DIMS, fold_splits, grouped_fold_splits
from classifiers.targets import training_set
from core.metrics import apgr, cpt, routed_accuracy
from policies.calibrate import calibrate
from policies.loader import load_policy
from policies.simulate import outcome_columns, resolve_mapping, simulate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "routellm" / "outcomes.jsonl"
POLICY = ROOT / "bench" / "configs" / "routellm_gain.yaml"
FINE_FRACTIONS = np.linspace(0.0, 1.0, 1001)
Splits = list[tuple[np.ndarray, np.ndarray]]


def strong_share_for(score: np.ndarray, weak: np.ndarray, strong: np.ndarray, quality: float = 0.95) -> float | None:
    """The smallest share sent to strong (top by score, steps of 0.1%) reaching `quality` x strong accuracy."""
    accuracy = routed_accuracy(score, weak, strong, FINE_FRACTIONS)
    reached = np.nonzero(accuracy >= quality * strong.mean() - 1e-12)[0]
    return float(FINE_FRACTIONS[reached[0]]) if len(reached) else None


def out_of_fold(splits: Splits, n: int, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], width: int) -> np.ndarray:
    """Predictions of each test fold from a model fitted on the other folds."""
    out = np.full((n, width), np.nan)
    for train, test in splits:
        out[test] = fit_predict(train, test)
    return out


def gain_of(proba: np.ndarray) -> np.ndarray:
    """The routing score: P(strong right) - P(weak right)."""
    return np.asarray(proba[:, -1] - proba[:, 0], dtype=float)


def litellm_scores(prompts: Sequence[str]) -> np.ndarray:
    """LiteLLM ComplexityRouter's raw weighted score per prompt (rule-based; no network, no model)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from unittest.mock import MagicMock

    from litellm.router_strategy.complexity_router.complexity_router import ComplexityRouter

    router = ComplexityRouter(model_name="bench", ctx=MagicMock())  # classify() reads neither the router nor its context
    return np.array([router.classify(prompt)[1] for prompt in prompts], dtype=float)


SHIPPED_ROW = "shipped: ensemble (logreg+kNN), layer-1 int8"


def model_candidates(
    embeddings: np.ndarray, raw_features: np.ndarray, onehot: np.ndarray, targets: np.ndarray, splits: Splits,
    only: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Out-of-fold routing scores of the embedding and feature models."""
    n = len(targets)

    def kind(model: str, x: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            fitted = DifficultyClassifier(model=model, C=1.0, n_neighbors=100, knn_dims=KNN_DIMS).fit_embeddings(x[train], targets[train])
            return fitted.predict_proba_embeddings(x[test])

        return fit_predict

    def with_extra(extra: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        # The ensemble's average of logistic regression and kNN, the logistic part seeing the extra columns.
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            x_train, x_test = extra(train, test)
            linear = DifficultyClassifier(model="logreg", C=1.0).fit_embeddings(x_train, targets[train])
            knn = DifficultyClassifier(model="knn", n_neighbors=100, knn_dims=KNN_DIMS).fit_embeddings(embeddings[train], targets[train])
            return (linear.predict_proba_embeddings(x_test) + knn.predict_proba_embeddings(embeddings[test])) / 2

        return fit_predict

    def features(train: np.ndarray, test: np.ndarray, sources: bool = False) -> tuple[np.ndarray, np.ndarray]:
        scaler = FeatureScaler().fit(raw_features[train])
        parts_train = [embeddings[train], scaler.transform(raw_features[train])]
        parts_test = [embeddings[test], scaler.transform(raw_features[test])]
        if sources:
            parts_train.append(onehot[train])
            parts_test.append(onehot[test])
        return np.hstack(parts_train), np.hstack(parts_test)

    def only_sources(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.hstack([embeddings[train], onehot[train]]), np.hstack([embeddings[test], onehot[test]])

    def features_alone(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        scaler = FeatureScaler().fit(raw_features[train])
        fitted = DifficultyClassifier(model="logreg", C=1.0).fit_embeddings(
            np.hstack([scaler.transform(raw_features[train]), onehot[train]]), targets[train]
        )
        return fitted.predict_proba_embeddings(np.hstack([scaler.transform(raw_features[test]), onehot[test]]))

    width = targets.shape[1]
    table = {
        SHIPPED_ROW: kind("ensemble", embeddings),
        "kNN k=100 alone": kind("knn", embeddings),
        "logistic regression alone": kind("logreg", embeddings),
        "ensemble + request features": with_extra(features),
        "ensemble + per-source intercepts": with_extra(only_sources),
        "ensemble + features + per-source": with_extra(lambda tr, te: features(tr, te, sources=True)),
        "request features + source alone (logreg)": features_alone,
    }
    scores = {}
    for name, fit_predict in table.items():
        if only is not None and name not in only:
            continue
        start = time.perf_counter()
        scores[name] = gain_of(out_of_fold(splits, n, fit_predict, width))
        print(f"{name}: {time.perf_counter() - start:.1f}s", flush=True)
    return scores


def finetuned_candidates(folder: Path, n: int, today: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict[str, object]]]:
    """Scores from bench/finetune_cv.py's fold files (NaN outside the folds it covers), and their info."""
    heads, gain_head, refit = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    refit_int8 = np.full(n, np.nan)  # bench/finetune_cv.py --int8: the ensemble on each fold's int8 ONNX export
    covered = np.zeros(n, dtype=bool)
    infos = []
    for path in sorted(folder.glob("fold-*.npz")):
        with np.load(path, allow_pickle=False) as fold:
            test = fold["test"]
            heads[test] = gain_of(fold["proba"])
            gain_head[test] = fold["gain_head"]
            refit[test] = gain_of(fold["ensemble_proba"])
            if "ensemble_int8_proba" in fold.files:
                refit_int8[test] = gain_of(fold["ensemble_int8_proba"])
            covered[test] = True
            infos.append({"fold": path.stem, **json.loads(str(fold["info"]))})
    # A fair blend: both parts are out of fold on the same folds; ranks put them on one scale.
    blend = np.full(n, np.nan)
    if covered.any():
        blend[covered] = rankdata(heads[covered]) + rankdata(today[covered])
    scores = {
        "fine-tuned MiniLM: tier heads": heads,
        "fine-tuned MiniLM: gain head": gain_head,
        "fine-tuned MiniLM vectors + ensemble": refit,
        "fine-tuned heads + today (rank mean)": blend,
    }
    if not np.isnan(refit_int8[covered]).any():  # every covered fold was exported: the served configuration
        scores["fine-tuned int8 ONNX + ensemble (served)"] = refit_int8
    return scores, covered, infos


def cost_factor(records: Sequence[object], score: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """(always-strong cost per correct / calibrated policy's, its strong share, its quality) at 95% quality."""
    policy = load_policy(POLICY)
    mapping, _ = resolve_mapping(policy, outcome_columns(records))  # type: ignore[arg-type]
    difficulty = (rankdata(score) - 1) / max(len(score) - 1, 1)
    result = calibrate(records, difficulty, policy, mapping, target_quality=0.95)  # type: ignore[arg-type]
    strongest = simulate(records, difficulty, policy, mapping).result("always-strongest")  # type: ignore[arg-type]
    chosen = result.chosen.cost_per_correct_usd
    if chosen is None or strongest.cost_per_correct_usd is None:
        return None, result.chosen.strong_share, result.chosen.quality
    return strongest.cost_per_correct_usd / chosen, result.chosen.strong_share, result.chosen.quality


def rows_table(
    scores: dict[str, np.ndarray], weak: np.ndarray, strong: np.ndarray, groups: np.ndarray,
    records: Sequence[object], mask: np.ndarray,
) -> list[dict[str, object]]:
    """Every figure of every candidate on the rows in `mask`."""
    rows = []
    subset = [r for r, keep in zip(records, mask, strict=True) if keep]
    for name, score in scores.items():
        row: dict[str, object] = {"router": name}
        for group in ("gsm8k", "mmlu"):
            pick = mask & (groups == group)
            row[f"{group}_apgr"] = apgr(score[pick], weak[pick], strong[pick])
            row[f"{group}_cpt50"] = cpt(score[pick], weak[pick], strong[pick], 0.5)
            row[f"{group}_strong_share_95"] = strong_share_for(score[pick], weak[pick], strong[pick])
        row["all_apgr"] = apgr(score[mask], weak[mask], strong[mask])
        factor, share, quality = cost_factor(subset, score[mask])
        row["cost_factor_95"], row["policy_strong_share_95"], row["policy_quality"] = factor, share, quality
        rows.append(row)
    return rows


def paired_against(
    base: np.ndarray, scores: dict[str, np.ndarray], weak: np.ndarray, strong: np.ndarray, groups: np.ndarray,
    splits: Splits, resamples: int = 300, seed: int = 0,
) -> list[dict[str, object]]:
    """Each candidate's APGR minus `base`'s per source: per fold, and a paired bootstrap 95% interval of the pooled difference."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, score in scores.items():
        row: dict[str, object] = {"router": name}
        for group in ("gsm8k", "mmlu"):
            per_fold = []
            for _, test in splits:
                pick = np.zeros(len(score), dtype=bool)
                pick[test] = True
                pick &= groups == group
                per_fold.append(_difference(score, base, weak, strong, np.nonzero(pick)[0]))
            members = np.nonzero(groups == group)[0]
            boots = [_difference(score, base, weak, strong, rng.choice(members, len(members))) for _ in range(resamples)]
            row[f"{group}_diff"] = _difference(score, base, weak, strong, members)
            row[f"{group}_per_fold"] = per_fold
            row[f"{group}_ci95"] = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]
        rows.append(row)
    return rows


def _difference(score: np.ndarray, base: np.ndarray, weak: np.ndarray, strong: np.ndarray, rows: np.ndarray) -> float:
    ours, theirs = apgr(score[rows], weak[rows], strong[rows]), apgr(base[rows], weak[rows], strong[rows])
    return float("nan") if ours is None or theirs is None else ours - theirs


def print_paired(rows: list[dict[str, object]]) -> None:
    """The paired differences in APGR against today's classifier."""
    print("\nAPGR minus the shipped classifier (pooled; per fold; paired bootstrap 95% interval over rows)")
    for row in rows:
        cells = []
        for group in ("gsm8k", "mmlu"):
            folds = " ".join(f"{d:+.3f}" for d in row[f"{group}_per_fold"])  # type: ignore[attr-defined]
            low, high = row[f"{group}_ci95"]  # type: ignore[misc]
            cells.append(f"{group} {row[f'{group}_diff']:+.3f} [{folds}] ({low:+.3f}, {high:+.3f})")
        print(f"{str(row['router']):42s}" + "   ".join(cells))


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    """A fixed-width table: APGR, CPT(50%), strong share for 95% per source; the cost factor overall."""
    print(f"\n{title}")
    heads = ["GSM8K APGR", "CPT50", "share95", "MMLU APGR", "CPT50", "share95", "all APGR", "cost x95", "pol.share"]
    print(f"{'router':42s}" + "".join(f"{h:>11s}" for h in heads))
    keys = ["gsm8k_apgr", "gsm8k_cpt50", "gsm8k_strong_share_95", "mmlu_apgr", "mmlu_cpt50", "mmlu_strong_share_95",
            "all_apgr", "cost_factor_95", "policy_strong_share_95"]
    for row in rows:
        cells = []
        for key in keys:
            value = row[key]
            cells.append(f"{'-' if value is None else f'{value:.3f}':>11s}")
        print(f"{str(row['router']):42s}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grouped", action="store_true", help="hold out whole MMLU subjects per fold")
    parser.add_argument("--finetuned", type=Path, default=None, help="bench/finetune_cv.py's --out folder")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--paired", action="store_true", help="each candidate's APGR minus today's, per fold and bootstrapped")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--also", default="", help="more encoders (names or exported folders, comma-separated): "
                        "the shipped ensemble on each, e.g. bench/encoder_variants.py's 6x256h (the previous encoder)")
    args = parser.parse_args()

    began = time.perf_counter()
    records = load_records(args.data).records
    data = training_set(records)
    weak, strong = data.targets[:, 0], data.targets[:, -1]
    groups = np.array([s.split("/", 1)[0] for s in data.sources])
    encoder = make_encoder(DEFAULT_EMBEDDING_MODEL, cache=EmbeddingCache(), threads=1)
    embeddings = encoder.encode(data.texts)
    raw_features = prompt_features(data.texts)
    onehot = source_onehot(data.sources, sorted(set(groups)))
    splits = (grouped_fold_splits if args.grouped else fold_splits)(data.targets, data.sources, args.folds, args.seed)
    print(f"{len(data.texts)} rows, {args.folds} {'grouped ' if args.grouped else ''}folds; "
          f"embedded (cache) and featurised in {time.perf_counter() - began:.1f}s", flush=True)

    scores = model_candidates(embeddings, raw_features, onehot, data.targets, splits)
    for name in filter(None, (text.strip() for text in args.also.split(","))):
        other = make_encoder(name, cache=EmbeddingCache(), threads=1).encode(data.texts)
        scores[f"ensemble on {name.rstrip('/').rsplit('/', 1)[-1]}"] = model_candidates(
            other, raw_features, onehot, data.targets, splits, only=(SHIPPED_ROW,)
        )[SHIPPED_ROW]
    if not args.skip_litellm:
        start = time.perf_counter()
        lite = litellm_scores(data.texts)
        print(f"LiteLLM ComplexityRouter: {time.perf_counter() - start:.1f}s", flush=True)
        with_lite = np.column_stack([raw_features, lite])  # a column past FEATURE_NAMES: standardised, not logged
        scores["ensemble + features + LiteLLM score"] = model_candidates(
            embeddings, with_lite, onehot, data.targets, splits, only=("ensemble + request features",)
        )["ensemble + request features"]
        scores["LiteLLM ComplexityRouter"] = lite
    scores["random"] = np.random.default_rng(args.seed).random(len(data.texts))
    everything = np.ones(len(data.texts), dtype=bool)
    kind = "grouped by MMLU subject" if args.grouped else "stratified"
    report: dict[str, object] = {"folds": args.folds, "seed": args.seed, "grouped": args.grouped}
    report["all_folds"] = rows_table(scores, weak, strong, groups, records, everything)
    print_table(f"{args.folds}-fold CV ({kind}, seed {args.seed}), all {len(data.texts)} rows", report["all_folds"])  # type: ignore[arg-type]

    headline = report["all_folds"][0]  # type: ignore[index]
    if args.paired:
        today = scores[str(headline["router"])]
        others = {name: score for name, score in scores.items() if name != headline["router"]}
        report["paired"] = paired_against(today, others, weak, strong, groups, splits)
        print_paired(report["paired"])  # type: ignore[arg-type]
    if args.finetuned is not None:
        tuned, covered, infos = finetuned_candidates(args.finetuned, len(data.texts), scores[next(iter(scores))])
        report["finetuned_info"] = infos
        if covered.any():
            folds_done = ", ".join(info["fold"] for info in infos)  # type: ignore[misc]
            subset = {**tuned, **scores}
            report["finetuned_folds"] = rows_table(subset, weak, strong, groups, records, covered)
            print_table(f"the folds the fine-tuned encoder covers ({folds_done}), {int(covered.sum())} rows",
                        report["finetuned_folds"])  # type: ignore[arg-type]
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nFIGURE the shipped classifier, {kind} {args.folds}-fold CV: APGR GSM8K {headline['gsm8k_apgr']:.3f} / "
          f"MMLU {headline['mmlu_apgr']:.3f}, MMLU strong share for 95% {headline['mmlu_strong_share_95']:.3f}, "
          f"cost per correct at 95% {headline['cost_factor_95']:.2f}x below always-strong "
          f"({time.perf_counter() - began:.0f}s)")


if __name__ == "__main__":
    main()
