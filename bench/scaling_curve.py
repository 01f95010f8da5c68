"""Inference-time scaling on the embedded SmolLM2-135M: accuracy vs tokens for self-consistency.

    python bench/scaling_curve.py --threads 1                # 40 questions, about 8-10 minutes on 2 busy CPU cores
    python bench/scaling_curve.py --quick                    # CI-size smoke run

Runs, on data/tasks/arithmetic.jsonl (`What is a + b?`, a, b in 2..12), with the real local model:
greedy decoding (one sample, T=0); self-consistency with a fixed n = 1, 3, 5, 9 (all n drawn in
one batched call, T=0.7); and early-stopping self-consistency: up to 9 samples in rounds of 3,
stopping once the leader cannot be overtaken or its agreement reaches 0.6.
Each question runs every configuration in turn, so CPU contention from other processes falls on
all of them alike. Tokens are input + output as the backend bills them (the prompt once per call,
so rounds pay it again). Writes bench/out/scaling_curve.{csv,md,png}; the last line printed is
the headline figure.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core import metrics
from router.backends import (
    GenerationParams,
    LocalBackend,
    LocalModelLoader,
    LocalModelSpec,
)
from strategies import (
    Direct,
    DirectConfig,
    SelfConsistency,
    SelfConsistencyConfig,
    Strategy,
    grade,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data" / "tasks" / "arithmetic.jsonl"
DEFAULT_OUT = REPO / "bench" / "out"


@dataclass
class Row:
    """Totals of one configuration over the questions it answered."""

    name: str
    kind: str  # greedy | fixed | early
    max_samples: int
    correct: int = 0
    questions: int = 0
    samples: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    wall_s: float = 0.0
    stop_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Correct / questions (0 before the first question)."""
        return metrics.accuracy(self.correct, self.questions) or 0.0

    @property
    def tokens_per_question(self) -> float:
        """Input plus output tokens per question (0 before the first question)."""
        return metrics.ratio(self.input_tokens + self.output_tokens, self.questions) or 0.0

    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the accuracy."""
        n, z = self.questions, 1.96
        if n == 0:
            return 0.0, 0.0
        p = self.accuracy
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)


def configurations(args: argparse.Namespace) -> list[tuple[Row, Strategy]]:
    """The strategies to compare, each with its empty row."""
    plans: list[tuple[Row, Strategy]] = [
        (Row("greedy", "greedy", 1), Direct(DirectConfig(answer_type="number")))
    ]
    for n in args.ns:
        config = SelfConsistencyConfig(n=n, temperature=args.temperature, answer_type="number")
        plans.append((Row(f"sc n={n}", "fixed", n), SelfConsistency(config)))
    early = SelfConsistencyConfig(
        n=args.early_n,
        temperature=args.temperature,
        answer_type="number",
        round_size=args.round_size,
        stop_agreement=args.stop_agreement,
    )
    name = f"early n<={args.early_n} (rounds of {args.round_size}, agree>={args.stop_agreement:g})"
    plans.append((Row(name, "early", args.early_n), SelfConsistency(early)))
    return plans


async def measure(args: argparse.Namespace, questions: list[dict[str, str]]) -> list[Row]:
    """Run every configuration on every question with the real local model."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model = LocalModelLoader().load(LocalModelSpec(args.model, device=args.device))
    print(f"loaded {model.name} on {model.device} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    backend = LocalBackend(model)
    params = GenerationParams(max_tokens=args.max_tokens, timeout_s=600)
    plans = configurations(args)
    for index, question in enumerate(questions, start=1):
        messages = [{"role": "user", "content": question["question"]}]
        for row, strategy in plans:
            began = time.perf_counter()
            result = await strategy.run(backend, messages, params)  # type: ignore[arg-type]
            row.wall_s += time.perf_counter() - began
            row.questions += 1
            row.correct += grade(result.answer, question["answer"], "number")
            row.samples += result.samples_used
            row.input_tokens += result.input_tokens
            row.output_tokens += result.output_tokens
            row.stop_reasons[result.stop_reason] = row.stop_reasons.get(result.stop_reason, 0) + 1
        if index % 5 == 0 or index == len(questions):
            summary = ", ".join(f"{row.name} {row.accuracy:.0%}" for row, _ in plans)
            print(f"[{index}/{len(questions)}] {summary}", file=sys.stderr)
    await backend.aclose()
    return [row for row, _ in plans]


HEADER = [
    "config", "accuracy", "ci95_low", "ci95_high", "correct", "questions", "samples_per_q",
    "input_tokens", "output_tokens", "tokens_per_q", "wall_s", "s_per_q", "stops",
]


def table_rows(rows: list[Row]) -> list[list[str]]:
    """One formatted line per configuration, in HEADER order."""
    lines = []
    for row in rows:
        low, high = row.interval()
        stops = " ".join(f"{k}:{v}" for k, v in sorted(row.stop_reasons.items()))
        lines.append([
            row.name, f"{row.accuracy:.3f}", f"{low:.3f}", f"{high:.3f}", str(row.correct), str(row.questions),
            f"{row.samples / row.questions:.2f}", str(row.input_tokens), str(row.output_tokens),
            f"{row.tokens_per_question:.1f}", f"{row.wall_s:.1f}", f"{row.wall_s / row.questions:.2f}", stops,
        ])
    return lines


def write_outputs(rows: list[Row], out: Path, title: str) -> str:
    """Write CSV, markdown and PNG; return the markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    lines = table_rows(rows)
    with (out / "scaling_curve.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(lines)
    markdown = "\n".join(
        ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)] + ["| " + " | ".join(line) + " |" for line in lines]
    )
    (out / "scaling_curve.md").write_text(f"# {title}\n\n{markdown}\n", encoding="utf-8")
    plot(rows, out / "scaling_curve.png", title)
    return markdown


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Accuracy (95% intervals) against total and against output tokens; no pyplot, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(figure)
    styles = {"greedy": ("s", "tab:gray"), "fixed": ("o", "tab:blue"), "early": ("D", "tab:red")}
    labels = {"greedy": "greedy (T=0, 1 sample)", "fixed": "self-consistency, fixed n", "early": ""}
    panels: list[tuple[str, Callable[[Row], float]]] = [
        ("tokens per question (input + output)", lambda r: r.tokens_per_question),
        ("output tokens per question", lambda r: r.output_tokens / r.questions),
    ]
    for column, (xlabel, x_of) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, column)
        fixed = [row for row in rows if row.kind == "fixed"]
        axes.plot([x_of(r) for r in fixed], [r.accuracy for r in fixed], "-", color="tab:blue", alpha=0.4)
        seen: set[str] = set()
        for row in rows:
            marker, colour = styles[row.kind]
            low, high = row.interval()
            label = (labels[row.kind] or row.name) if row.kind not in seen else None
            seen.add(row.kind)
            axes.errorbar(
                x_of(row), row.accuracy, yerr=[[row.accuracy - low], [high - row.accuracy]],
                fmt=marker, color=colour, capsize=3, label=label, alpha=0.9,
            )
            if row.kind == "fixed":
                axes.annotate(f"n={row.max_samples}", (x_of(row), row.accuracy), textcoords="offset points",
                              xytext=(6, -12), fontsize=8)
        axes.set_xscale("log")
        axes.set_xlabel(f"{xlabel}, log scale")
        axes.set_ylabel("accuracy (95% Wilson interval)")
        axes.set_ylim(0, 1)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7, loc="upper left")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def rows_from_csv(path: Path) -> list[Row]:
    """Rows of an earlier run, to redraw its table and plot without measuring again."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in csv.DictReader(handle):
            name = line["config"]
            kind = "greedy" if name == "greedy" else "fixed" if name.startswith("sc n=") else "early"
            questions = int(line["questions"])
            max_samples = int(name.split("=")[1]) if kind == "fixed" else 1
            stops = dict(item.split(":") for item in line["stops"].split())
            rows.append(Row(
                name, kind, max_samples, int(line["correct"]), questions,
                round(float(line["samples_per_q"]) * questions), int(line["input_tokens"]),
                int(line["output_tokens"]), float(line["wall_s"]), {k: int(v) for k, v in stops.items()},
            ))
    return rows


def headline(rows: list[Row]) -> str:
    """One sentence: what scaling bought, and what early stopping cost or saved against the largest n."""
    fixed = [row for row in rows if row.kind == "fixed"]
    one, top = fixed[0], fixed[-1]
    parts = [
        (
            f"headline: greedy {rows[0].accuracy:.1%}; self-consistency {one.name} {one.accuracy:.1%} -> "
            f"{top.name} {top.accuracy:.1%} at {top.tokens_per_question / one.tokens_per_question:.1f}x the tokens"
        )
    ]
    for early in (row for row in rows if row.kind == "early"):
        output_ratio = early.output_tokens / top.output_tokens if top.output_tokens else 0.0
        total_ratio = early.tokens_per_question / top.tokens_per_question if top.tokens_per_question else 0.0
        parts.append(
            f"{early.name} {early.accuracy:.1%} with {output_ratio:.0%} of {top.name}'s output tokens, "
            f"{total_ratio:.0%} of its total tokens and {early.wall_s / top.wall_s:.0%} of its time"
        )
    return "; ".join(parts)


def parse_args() -> argparse.Namespace:
    """Command-line options; --quick shrinks everything to a CI-size run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL of {id, question, answer}")
    parser.add_argument("--limit", type=int, default=40, help="first N questions (default 40, about 10 minutes on 2 shared CPU cores; 0 = all)")
    parser.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3, 5, 9],
                        help="fixed sample counts, comma-separated (default 1,3,5,9)")
    parser.add_argument("--early-n", type=int, default=9, help="early stopping: most samples (default 9)")
    parser.add_argument("--round-size", type=int, default=3, help="early stopping: samples per round (default 3)")
    parser.add_argument("--stop-agreement", type=float, default=0.6, help="early stopping: agreement level (default 0.6)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    parser.add_argument("--max-tokens", type=int, default=12, help="tokens per sample (default 12)")
    parser.add_argument("--model", default="smollm2", help="local model: smollm2, a hub name or a folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default: torch's choice; 1 is much faster on a busy shared CPU)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for sampling (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default bench/out)")
    parser.add_argument("--quick", action="store_true", help="CI size: 5 questions, n = 1, 3, early stop up to 3")
    parser.add_argument("--from-csv", type=Path, default=None,
                        help="redraw the table and plot from an earlier run's scaling_curve.csv, measuring nothing")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.ns, args.early_n, args.round_size = 5, [1, 3], 3, 1
    if not args.ns or min(args.ns) < 1 or args.early_n < 1 or args.round_size < 1 or args.max_tokens < 1:
        parser.error("--ns, --early-n, --round-size and --max-tokens must all be >= 1")
    return args


def main() -> None:
    """Measure (or reload), write the outputs, print the table and then the headline."""
    args = parse_args()
    questions = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.limit:
        questions = questions[: args.limit]
    title = (
        f"{args.model} on {args.data.name} ({len(questions)} questions), T={args.temperature:g}, "
        f"max_tokens={args.max_tokens}"
    )
    if args.from_csv is not None:
        rows = rows_from_csv(args.from_csv)
        title = (args.out / "scaling_curve.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
    else:
        rows = asyncio.run(measure(args, questions))
    markdown = write_outputs(rows, args.out, title)
    print(f"\n{title}\n\n{markdown}\n\nwrote {args.out}/scaling_curve.csv, .md, .png\n")
    print(headline(rows))


if __name__ == "__main__":
    main()
