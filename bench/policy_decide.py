"""Latency of `Policy.decide`: p50 and p99 over many calls on the shipped router.yaml.

    python bench/policy_decide.py [--config router.yaml] [--calls 100000]

Each call is timed on its own with perf_counter_ns (the timer's own overhead, measured on empty
calls, is subtracted). Queries and difficulties are drawn up front, so only decide is timed.
The last line is the headline figure.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from policies import load_policy

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "router.yaml"


def main() -> None:
    """Run the benchmark and print p50/p99 in microseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="policy file")
    parser.add_argument("--calls", type=int, default=100_000, help="number of timed decide calls")
    args = parser.parse_args()

    policy = load_policy(args.config)
    rng = random.Random(0)
    words = "what is the sum of seven and twelve prove that every integer explain why".split()
    queries = [" ".join(rng.choices(words, k=rng.randint(3, 60))) for _ in range(1000)]
    difficulties = [rng.random() for _ in range(1000)]
    metadata = {"app": "bench"}
    decide = policy.decide
    clock = time.perf_counter_ns

    for i in range(10_000):  # warm-up
        decide(queries[i % 1000], difficulties[i % 1000], metadata)

    overhead = np.empty(10_000, dtype=np.int64)
    for i in range(overhead.size):
        start = clock()
        overhead[i] = clock() - start
    timings = np.empty(args.calls, dtype=np.int64)
    for i in range(args.calls):
        query, difficulty = queries[i % 1000], difficulties[i % 1000]
        start = clock()
        decide(query, difficulty, metadata)
        timings[i] = clock() - start
    timings = timings - int(np.median(overhead))

    p50, p99 = np.percentile(timings, [50, 99]) / 1000.0
    rules = len(policy.config.rules)
    print(f"policy {policy.source} (version {policy.version}), {rules} rules, {args.calls} calls")
    print(f"timer overhead (subtracted): {np.median(overhead)} ns")
    print(f"decide latency: p50 {p50:.2f} us, p99 {p99:.2f} us")


if __name__ == "__main__":
    main()
