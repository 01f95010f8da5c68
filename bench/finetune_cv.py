"""Out-of-fold scores of the fine-tuned MiniLM (classifiers.finetune) on the comparison's folds.

    nice -n 10 python bench/finetune_cv.py --out bench/out/finetune [--folds-only 0,1] [--unfreeze-layers 1]
        [--layers 1] [--max-tokens 64] [--truncation head_tail] [--epochs 3] [--budget-seconds 420]
        [--int8] [--grouped]

The default shape is the shipped encoder's: MiniLM's first layer on 64 tokens, head and tail
(`--layers 6 --max-tokens 128 --truncation head` is the earlier one).

For each fold (classifiers.selection.fold_splits, or grouped_fold_splits with --grouped: the same
folds as bench/routing_quality.py), trains the top layers and heads on the other folds (early
stopping on a validation tenth of them) and writes `fold-K.npz` with the held-out rows' per-tier
probabilities from the heads, the gain head's expected gain, and the probabilities of today's
ensemble (logistic regression + kNN in 64 PCA dims, classifiers.selection.ENSEMBLE) refitted on
the fine-tuned vectors of the training folds. With --int8, each fold's encoder is also exported as
the proxy would serve it (data/encoders/export.py: int8 ONNX, same layers, tokens and truncation,
kept in `fold-K-onnx/`), every text re-encoded by it, and the ensemble refitted on those vectors
(`ensemble_int8_proba`): the served configuration.
bench/routing_quality.py --finetuned DIR puts them in its table. Folds already written are skipped,
so an interrupted run resumes. The frozen lower layers' states are computed once and cached
(`$ROUTER_CACHE_DIR/finetune/`). The last line is the time spent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from classifiers.embedding_cache import default_cache_dir
from classifiers.estimator import DifficultyClassifier
from classifiers.finetune import FineTuneConfig, config_dict, fine_tune, frozen_states, predict
from classifiers.loaders import load_records
from classifiers.onnx_encoder import TRUNCATIONS
from classifiers.selection import ENSEMBLE, fold_splits, grouped_fold_splits
from classifiers.targets import training_set

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm" / "outcomes.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--folds-only", default="", help="comma-separated fold numbers to run (default: all)")
    parser.add_argument("--grouped", action="store_true", help="folds hold out whole MMLU subjects")
    parser.add_argument("--unfreeze-layers", type=int, default=1)
    parser.add_argument("--layers", type=int, default=FineTuneConfig.layers, help="MiniLM cut to its first N layers")
    parser.add_argument("--max-tokens", type=int, default=FineTuneConfig.max_tokens)
    parser.add_argument("--truncation", choices=TRUNCATIONS, default=FineTuneConfig.truncation)
    parser.add_argument("--int8", action="store_true", help="also score the ensemble on each fold's int8 ONNX export")
    parser.add_argument("--epochs", type=int, default=FineTuneConfig.epochs)
    parser.add_argument("--learning-rate", type=float, default=FineTuneConfig.learning_rate, help="for the trained layers")
    parser.add_argument("--head-learning-rate", type=float, default=FineTuneConfig.head_learning_rate)
    parser.add_argument("--batch-size", type=int, default=FineTuneConfig.batch_size)
    parser.add_argument("--patience", type=int, default=FineTuneConfig.patience, help="validation checks (two per epoch) without gain")
    parser.add_argument("--budget-seconds", type=float, default=420.0, help="training time limit per fold")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    data = training_set(load_records(args.data).records)
    config = FineTuneConfig(
        layers=args.layers, unfreeze_layers=args.unfreeze_layers, max_tokens=args.max_tokens,
        truncation=args.truncation, epochs=args.epochs,
        learning_rate=args.learning_rate, head_learning_rate=args.head_learning_rate, batch_size=args.batch_size,
        patience=args.patience, budget_seconds=args.budget_seconds, threads=args.threads, seed=args.seed,
    ).check()
    args.out.mkdir(parents=True, exist_ok=True)

    def progress(done: int, total: int) -> None:
        if done % 1280 < 64 or done == total:
            print(f"frozen states: {done}/{total} ({time.perf_counter() - began:.0f}s)", flush=True)

    start = time.perf_counter()
    states = frozen_states(
        data.texts, layers=args.layers, unfreeze_layers=args.unfreeze_layers, max_tokens=args.max_tokens,
        truncation=args.truncation, cache_dir=default_cache_dir() / "finetune", progress=progress,
    )
    states_seconds = time.perf_counter() - start
    print(f"frozen states ready in {states_seconds:.0f}s ({states.states.nbytes / 2**20:.0f} MiB)", flush=True)

    make = grouped_fold_splits if args.grouped else fold_splits
    splits = make(data.targets, data.sources, args.folds, args.seed)
    wanted = {int(f) for f in args.folds_only.split(",") if f.strip()} or set(range(args.folds))
    for number, (train, test) in enumerate(splits):
        path = args.out / f"fold-{number}.npz"
        if number not in wanted or path.exists():
            continue
        start = time.perf_counter()
        result = fine_tune(states, data.targets, train, config, log=lambda line: print(line, flush=True))
        train_seconds = time.perf_counter() - start
        everything = predict(result.model, states, np.arange(len(data.texts)))
        ensemble = DifficultyClassifier(**ENSEMBLE).fit_embeddings(  # type: ignore[arg-type]
            everything["vectors"][train], data.targets[train]
        )
        extra: dict[str, np.ndarray] = {}
        sizes: dict[str, float] = {}
        if args.int8:
            int8_start = time.perf_counter()
            vectors, sizes = int8_vectors(result.model, config, args.out / f"fold-{number}-onnx", data.texts, args.threads)
            served = DifficultyClassifier(**ENSEMBLE).fit_embeddings(vectors[train], data.targets[train])  # type: ignore[arg-type]
            extra["ensemble_int8_proba"] = served.predict_proba_embeddings(vectors[test])
            sizes["int8_seconds"] = time.perf_counter() - int8_start
            sizes["cosine_to_float32_mean"] = float(np.mean(np.sum(vectors * everything["vectors"], axis=1)))
        np.savez(
            path,
            test=test,
            proba=everything["proba"][test],
            gain_head=everything["gain_head"][test],
            ensemble_proba=ensemble.predict_proba_embeddings(everything["vectors"][test]),
            **extra,
            info=np.array(json.dumps({
                "config": config_dict(config), "history": result.history, "best_check": result.best_check,
                "stopped_by": result.stopped_by, "train_seconds": train_seconds,
                "fold_seconds": time.perf_counter() - start, "states_seconds": states_seconds,
                "grouped": args.grouped, "argv": sys.argv[1:], **sizes,
            })),
        )
        print(f"fold {number}: trained {train_seconds:.0f}s ({result.stopped_by}), "
              f"written in {time.perf_counter() - start:.0f}s", flush=True)
    print(f"finetune_cv: {time.perf_counter() - began:.0f}s in all")


def int8_vectors(
    model: object, config: FineTuneConfig, folder: Path, texts: list[str], threads: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Export the fine-tuned encoder as the proxy serves it (int8 ONNX into `folder`) and encode `texts` with it."""
    import shutil
    import tempfile

    from encoder_variants import export_script

    from classifiers.finetune import save_encoder
    from classifiers.onnx_encoder import OnnxEncoder

    exporter = export_script()
    with tempfile.TemporaryDirectory() as tmp:
        saved = save_encoder(model, Path(tmp) / "encoder", name=folder.name, info={"config": config_dict(config)},
                             layers=config.layers)
        settings = json.loads((saved / "sentence_bert_config.json").read_text())
        settings["max_seq_length"] = config.max_tokens
        (saved / "sentence_bert_config.json").write_text(json.dumps(settings))
        float32_bytes = (saved / "model.safetensors").stat().st_size
        if folder.exists():
            shutil.rmtree(folder)
        exporter.export(folder, model=saved, name=f"finetuned-{folder.name}", layers=config.layers,
                        max_tokens=config.max_tokens, truncation=config.truncation)
    vectors = OnnxEncoder(folder, threads=threads).encode(texts)
    return vectors, {"float32_safetensors_bytes": float(float32_bytes),
                     "int8_onnx_bytes": float((folder / "model.onnx").stat().st_size)}


if __name__ == "__main__":
    main()
