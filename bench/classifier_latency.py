"""Single-query scoring latency of the shipped classifier, embedding included, and its training time.

    python bench/classifier_latency.py [--queries 300] [--train]

Scores prompts one at a time (as the proxy does: one encoder thread) with the embedding cache off,
and prints p50/p99.
With --train, also times `router classifier train` on the whole shared file with a cold cache.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from classifiers.loaders import load_records
from classifiers.loading import load_classifier
from classifiers.onnx_encoder import OnnxEncoder

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm" / "outcomes.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--train", action="store_true", help="also time a cold-cache training run")
    args = parser.parse_args()

    records = load_records(SHARED).records
    rng = np.random.default_rng(0)
    prompts = [records[i].prompt for i in rng.choice(len(records), args.queries, replace=False)]
    start = time.perf_counter()
    classifier = load_classifier(threads=1)
    classifier.predict_difficulty(["warm-up"])
    print(f"load + first score: {time.perf_counter() - start:.2f}s")

    timings = []
    for prompt in prompts:
        start = time.perf_counter()
        classifier.predict_difficulty([prompt])
        timings.append((time.perf_counter() - start) * 1000)
    if isinstance(classifier.encoder, OnnxEncoder):
        tokens = [int(classifier.encoder.tokenize([p])[1].sum()) for p in prompts]
        print(f"prompt tokens: median {np.median(tokens):.0f}, p90 {np.percentile(tokens, 90):.0f}")

    train_line = ""
    if args.train:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "router.cli", "classifier", "train", "--data", str(SHARED),
                 "--out", f"{tmp}/clf", "--no-cache"],
                check=True, capture_output=True,
            )
            train_line = f"; cold-cache training on {len(records)} rows: {time.perf_counter() - start:.0f}s"
    p50, p99 = np.percentile(timings, [50, 99])
    print(f"FIGURE single-query scoring ({args.queries} queries, embedding included): p50 {p50:.1f} ms, p99 {p99:.1f} ms{train_line}")


if __name__ == "__main__":
    main()
