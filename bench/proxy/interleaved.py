"""Interleaved A/B of proxy variants on fresh real prompts: pass-through, then each variant routing, round after round.

    python bench/proxy/interleaved.py [--variants "process=ROUTER_CLASSIFIER_PROCESS=true;thread=ROUTER_CLASSIFIER_PROCESS=false"]
                                      [--rounds 3] [--requests 1200] [--concurrency 32,1] [--first-stage 0.005]

bench/proxy/run.py measures one target after another, minutes apart; on a shared machine whose
pace drifts by a fifth within minutes, two variants measured that way differ by the drift. Here
every variant is a `router serve` of its own (one worker, the two-stage policy of run.py, the
environment given: NAME=VAR=VALUE,VAR=VALUE;...), all started before the first round, and each
round runs pass-through (on the first variant's server) and every variant back to back at each
concurrency. Each run sends prompts no run sent before (GSM8K and MMLU questions from
../shared/data/routellm/outcomes.jsonl), so the score cache never answers. Prints each run with
the proxy's CPU per request (its own, and its children's: the classifier process), then per round
every variant's requests/s at the highest concurrency as a share of pass-through's and its added
p50 / p99 at c=1.

A variant's environment may name another checkout: `before=PYTHONPATH=/path/to/worktree` serves
that checkout's code and data/ (a `git worktree add` of an older commit), beside this one's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, run_load
from run import FIRST_STAGE, POLICY, REPO, free_port, real_questions, wait_http

TICKS = os.sysconf("SC_CLK_TCK")
DEFAULT_VARIANTS = "process=ROUTER_CLASSIFIER_PROCESS=true;thread=ROUTER_CLASSIFIER_PROCESS=false"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_cpu_seconds(pid: int) -> float:
    """CPU of the children of every thread of `pid` (a child started from a loader thread is that thread's)."""
    total = 0.0
    for thread in os.listdir(f"/proc/{pid}/task"):
        try:
            children = Path(f"/proc/{pid}/task/{thread}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                total += cpu_seconds(int(child))
            except OSError:
                pass  # it ended meanwhile
    return total


def parse_variants(text: str) -> list[tuple[str, dict[str, str]]]:
    """NAME=VAR=VALUE,VAR=VALUE;... into (name, environment) pairs."""
    variants = []
    for part in text.split(";"):
        name, _, settings = part.strip().partition("=")
        if not name:
            raise SystemExit(f"--variants: {part!r} has no name (NAME=VAR=VALUE,...)")
        variants.append((name, dict(item.split("=", 1) for item in settings.split(",") if item)))
    return variants


def main() -> None:
    """Start the stub and every variant, run the rounds, print the runs and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="NAME=VAR=VALUE,VAR=VALUE;... (each a server with that environment)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every run")
    parser.add_argument("--requests", type=int, default=1200, help="requests per run at c>1 (300 at c=1)")
    parser.add_argument("--concurrency", default="32,1", help="comma-separated concurrency levels")
    parser.add_argument("--first-stage", type=float, default=0.005, metavar="D",
                        help="the policy's first-stage disagreement (0: no first stage)")
    args = parser.parse_args()
    variants = parse_variants(args.variants)
    levels = [int(level) for level in args.concurrency.split(",")]
    per_round = sum((args.requests if level > 1 else 300) + 20 for level in levels) * (len(variants) + 1)
    pool = real_questions(13_000)
    if per_round * args.rounds > len(pool):
        raise SystemExit(f"{args.rounds} rounds need {per_round * args.rounds} distinct prompts; "
                         f"there are {len(pool)}: lower --requests or --rounds")
    work = Path(tempfile.mkdtemp(prefix="interleaved-"))
    stub_port = free_port()
    stub = f"http://127.0.0.1:{stub_port}/v1"
    first = FIRST_STAGE.format(disagreement=args.first_stage) if args.first_stage > 0 else ""
    (work / "router.yaml").write_text(first + POLICY.format(stub=stub))
    print(f"logs in {work}; one worker each; raw client; fresh real prompts every run", flush=True)
    processes = [subprocess.Popen([sys.executable, str(Path(__file__).parent / "stub.py"), "--port", str(stub_port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)]
    servers: list[tuple[str, int, subprocess.Popen[bytes]]] = []
    for name, environment in variants:
        port = free_port()
        with (work / f"{name}.log").open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "router", "serve", "--config", str(work / "router.yaml"), "--port", str(port),
                 "--log-level", "warning"],
                env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **environment},
                stdout=log, stderr=subprocess.STDOUT,
            )
        processes.append(server)
        servers.append((name, port, server))
    results: dict[tuple[str, int], list[LoadResult]] = {}
    taken = 0
    try:
        wait_http(f"{stub}/models", processes[0])
        for _, port, server in servers:
            wait_http(f"http://127.0.0.1:{port}/readyz", server)
        for round_ in range(args.rounds):
            for level in levels:
                count = args.requests if level > 1 else 300
                targets = [("pass-through", servers[0][1], servers[0][2], "cheap")]
                targets += [(name, port, server, "router") for name, port, server in servers]
                for name, port, server, model in targets:
                    texts, taken = pool[taken : taken + count + 20], taken + count + 20
                    bodies = [{"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 32}
                              for text in texts]
                    own, children, began = cpu_seconds(server.pid), children_cpu_seconds(server.pid), time.perf_counter()
                    result = asyncio.run(run_load(
                        f"http://127.0.0.1:{port}/v1/chat/completions", bodies[20:], concurrency=level, requests=count,
                        max_seconds=60, client="raw", warmup=bodies[:20],
                    ))
                    wall = time.perf_counter() - began
                    own = cpu_seconds(server.pid) - own
                    children = children_cpu_seconds(server.pid) - children
                    done = max(1, result.requests)
                    results.setdefault((name, level), []).append(result)
                    print(f"round {round_} c={level:<2} {name:<14} {result.rps:6.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                          f"p99 {result.p99_ms:7.2f} ms  {result.errors} errors; CPU per request {1000 * own / done:.2f} ms "
                          f"(children {1000 * children / done:.2f}); busy {own / wall:.2f} + {children / wall:.2f} cores",
                          flush=True)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
    busiest = max(levels)
    print(f"\nper round: requests/s at c={busiest} (share of pass-through's), added p50 / p99 over pass-through at c=1")
    for round_ in range(args.rounds):
        cells = []
        for name, _, _ in servers:
            cell = name + ":"
            if busiest > 1:
                ours, passing = results[(name, busiest)][round_], results[("pass-through", busiest)][round_]
                cell += f" {ours.rps:.0f} ({ours.rps / passing.rps:.0%} of {passing.rps:.0f})"
            if (name, 1) in results:
                ours, passing = results[(name, 1)][round_], results[("pass-through", 1)][round_]
                cell += f", +{ours.p50_ms - passing.p50_ms:.2f} / +{ours.p99_ms - passing.p99_ms:.2f} ms"
            cells.append(cell)
        print(f"  round {round_}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
