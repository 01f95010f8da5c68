"""Write data/tasks/arithmetic.jsonl: every sum a + b for a, b in [LOW, HIGH], in a seeded order.

    python data/tasks/make_arithmetic.py                # the shipped file (2..12, seed 0: 121 questions)
    python data/tasks/make_arithmetic.py --low 2 --high 20 --output /tmp/harder.jsonl

Each line is {"id", "question", "answer"}; the order is shuffled with the seed so that
`--limit N` in the benchmark takes a spread of easy and hard sums, the same N every time.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

QUESTION = "What is {a} + {b}? Answer with just the number."


def make_questions(low: int, high: int, seed: int) -> list[dict[str, str]]:
    """All ordered pairs in [low, high], shuffled deterministically."""
    pairs = [(a, b) for a in range(low, high + 1) for b in range(low, high + 1)]
    random.Random(seed).shuffle(pairs)
    return [
        {"id": f"add-{a}-{b}", "question": QUESTION.format(a=a, b=b), "answer": str(a + b)}
        for a, b in pairs
    ]


def main() -> None:
    """Parse arguments and write the JSONL file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=int, default=2, help="smallest operand (default 2)")
    parser.add_argument("--high", type=int, default=12, help="largest operand (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).with_name("arithmetic.jsonl"), help="where to write"
    )
    args = parser.parse_args()
    if args.low > args.high:
        parser.error(f"--low ({args.low}) must not exceed --high ({args.high})")
    rows = make_questions(args.low, args.high, args.seed)
    args.output.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} questions to {args.output}")


if __name__ == "__main__":
    main()
