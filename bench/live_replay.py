"""Replay benchmark of the live loop: learn routing from judged live traffic, end to end.

    python bench/live_replay.py [--rows 3000] [--explore 0.1] [--workers 2] [--concurrency 8]

Rows of ../shared/data/routellm/outcomes.jsonl (a random `--rows` of them) are split into
held-out (20%, never seen by the loop), seed (10%) and traffic (the rest). The replay upstream
(bench/live/upstream.py) answers as the recorded outcomes say and its judge grades against the
reference. Steps, each through the real commands:

1. `router classifier train --data seed` and `router policy calibrate --target-quality 0.95 --write`;
2. `router serve` with that policy, exploration on `--explore` of requests, grading on all;
   `router worker` processes; the traffic rows sent as `auto` requests;
3. `router classifier train --data seed --from-ledger` and `router policy calibrate --from-ledger`
   (target 95% of always-strong) on a policy using the retrained classifier;
4. offline: `router classifier train` on seed + traffic with every recorded outcome.

On held-out rows, for each classifier: APGR, and the cost per correct answer at the cheapest
strong share whose accuracy reaches 95% of always-strong (per-request cost of each tier measured
in the ledger), with the threshold chosen on each held-out set (ranking quality); and the held-out
quality and cost per correct answer at the thresholds the loop itself calibrated. Figures are printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.live.setup import write_replay_policy  # noqa: E402
from bench.live.upstream import load_rows  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "routellm" / "outcomes.jsonl"
ROUTER = [sys.executable, "-m", "router"]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as handle:
        handle.write(("$ " + " ".join(args) + "\n").encode())
        handle.flush()
        code = subprocess.call(args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if code:
        raise SystemExit(f"failed ({code}): {' '.join(args)}; see {log}")


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def scores_of(artifact: Path, prompts: list[str]) -> np.ndarray:
    from classifiers.loading import load_classifier

    return np.asarray(load_classifier(artifact).predict_score(prompts, "difficulty"), dtype=float)


def at_quality(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, cost: dict[str, float],
               quality: float = 0.95) -> tuple[float, float, float | None]:
    """(strong share, accuracy, cost per correct) at the cheapest share reaching quality x always-strong."""
    order = np.argsort(-scores, kind="stable")
    target = quality * strong.mean()
    for k in range(len(scores) + 1):
        to_strong = np.zeros(len(scores), dtype=bool)
        to_strong[order[:k]] = True
        correct = np.where(to_strong, strong, weak).sum()
        if correct / len(scores) >= target - 1e-12:
            spend = k * cost["strong"] + (len(scores) - k) * cost["weak"]
            return k / len(scores), correct / len(scores), (spend / correct if correct else None)
    return 1.0, float(strong.mean()), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--explore", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "results" / "live_replay")
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA} is missing (see ../shared/data/README.md)")
    from core.metrics import apgr

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    log.write_text("")
    rows = load_rows(str(DATA))
    random.Random(args.seed).shuffle(rows)
    rows = rows[: args.rows]
    n_held, n_seed = len(rows) // 5, len(rows) // 10
    held, seed, traffic = rows[:n_held], rows[n_held:n_held + n_seed], rows[n_held + n_seed:]
    seed_path = write_rows(work / "seed.jsonl", seed)
    write_rows(work / "offline.jsonl", seed + traffic)
    prefix = f"bench-live-{uuid.uuid4().hex[:6]}:"
    env = {**os.environ, "REDIS_URL": args.redis_url, "ROUTER_REDIS_PREFIX": prefix, "NO_PROXY": "127.0.0.1,localhost",
           "PYTHONPATH": str(REPO)}
    timings: dict[str, float] = {}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        up_port, proxy_port = 18100 + random.randrange(500), 18700 + random.randrange(500)
        all_rows = write_rows(work / "all.jsonl", rows)
        processes.append(subprocess.Popen([sys.executable, "-m", "bench.live.upstream", "--data", str(all_rows),
                                           "--port", str(up_port)], env=env, cwd=REPO))
        upstream = f"http://127.0.0.1:{up_port}"
        started = time.perf_counter()
        run([*ROUTER, "classifier", "train", "--data", str(seed_path), "--out", str(work / "before"), "--cv", "3"], env, log)
        policy = write_replay_policy(work / "router.yaml", upstream, classifier=str(work / "before"),
                                     grade=1.0, explore=args.explore)
        run([*ROUTER, "policy", "calibrate", "--data", str(seed_path), "--config", str(policy),
             "--target-quality", "0.95", "--write"], env, log)
        timings["seed training"] = time.perf_counter() - started

        with (work / "serve.log").open("wb") as serve_log:
            processes.append(subprocess.Popen([*ROUTER, "serve", "--config", str(policy), "--port", str(proxy_port)],
                                              env=env, stdout=serve_log, stderr=subprocess.STDOUT, cwd=REPO))
        proxy = f"http://127.0.0.1:{proxy_port}"
        wait_http(f"{proxy}/healthz", 300)
        for i in range(args.workers):
            with (work / f"worker-{i}.log").open("wb") as worker_log:
                processes.append(subprocess.Popen(
                    [*ROUTER, "worker", "--config", str(policy), "--prefix", prefix, "--concurrency", "8"],
                    env=env, stdout=worker_log, stderr=subprocess.STDOUT, cwd=REPO))
        started = time.perf_counter()
        sent = send_traffic(proxy, traffic, args.concurrency)
        timings["traffic"] = time.perf_counter() - started
        if sent < len(traffic) * 0.99:
            raise SystemExit(f"only {sent} of {len(traffic)} requests succeeded; see {work / 'serve.log'}")
        import redis

        client = redis.Redis.from_url(args.redis_url, decode_responses=True)
        started = time.perf_counter()
        while client.xlen(f"{prefix}live:jobs") > 0:
            time.sleep(0.5)
        timings["queue drain after traffic"] = time.perf_counter() - started
        stats = {k: int(v) for k, v in client.hgetall(f"{prefix}live:stats").items()}
        spent = {kind: int(client.get(f"{prefix}live:spent:{kind}:{time.strftime('%Y-%m-%d', time.gmtime())}") or 0) / 1e9
                 for kind in ("grading", "exploration")}

        started = time.perf_counter()
        run([*ROUTER, "classifier", "train", "--data", str(seed_path), "--from-ledger", "--prefix", prefix,
             "--min-per-tier", "20", "--out", str(work / "after"), "--cv", "3"], env, log)
        after_policy = write_replay_policy(work / "router-after.yaml", upstream, classifier=str(work / "after"),
                                           grade=1.0, explore=args.explore)
        run([*ROUTER, "policy", "calibrate", "--from-ledger", "--prefix", prefix, "--min-per-tier", "20",
             "--config", str(after_policy), "--target-quality", "0.95", "--write"], env, log)
        timings["retrain + recalibrate from ledger"] = time.perf_counter() - started
        run([*ROUTER, "classifier", "train", "--data", str(work / "offline.jsonl"), "--out", str(work / "offline"),
             "--cv", "3"], env, log)
        ledger_meta = json.loads((work / "after" / "classifier.json").read_text())["training"]["ledger"]
        report = json.loads(subprocess.run([*ROUTER, "report", "--by", "tier", "--json", "--since", "all", "--prefix", prefix],
                                           env=env, capture_output=True, text=True, cwd=REPO, check=True).stdout)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    by_tier = {row["key"]: row for row in report["rows"]}
    cost = {tier: by_tier[tier]["cost_per_request"] for tier in ("weak", "strong") if tier in by_tier}
    prompts = [r["prompt"] for r in held]
    weak = np.array([float(r["outcomes"]["weak"]["correct"]) for r in held])
    strong = np.array([float(r["outcomes"]["strong"]["correct"]) for r in held])
    from policies import load_policy

    thresholds = {"before": load_policy(work / "router.yaml").thresholds[0],
                  "after": load_policy(work / "router-after.yaml").thresholds[0]}
    results: dict[str, dict[str, Any]] = {}
    for name in ("before", "after", "offline"):
        scores = scores_of(work / name, prompts)
        share, acc, cpc = at_quality(scores, weak, strong, cost)
        results[name] = {"apgr": apgr(scores, weak, strong), "strong_share": share, "accuracy": acc, "cost_per_correct": cpc}
        if name in thresholds:  # the thresholds the loop itself chose (seed / ledger calibration), on held-out rows
            to_strong = scores >= thresholds[name]
            correct = float(np.where(to_strong, strong, weak).sum())
            spend = to_strong.sum() * cost["strong"] + (~to_strong).sum() * cost["weak"]
            results[name]["calibrated"] = {"threshold": thresholds[name], "strong_share": float(to_strong.mean()),
                                           "quality": correct / len(held) / strong.mean(),
                                           "cost_per_correct": spend / correct if correct else None}
    summary = {"rows": len(rows), "held_out": len(held), "seed": len(seed), "traffic": sent, "stats": stats,
               "spent_usd": spent, "ledger_training": ledger_meta, "cost_per_request": cost, "timings_s": timings,
               "results": results}
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=2))
    print(f"\nheld-out rows: {len(held)}; always-weak accuracy {weak.mean():.3f}, always-strong {strong.mean():.3f}")
    print(f"{'classifier':<28} {'APGR':>6} {'strong share@95%':>17} {'cost/correct@95%':>17}")
    labels = {"before": "before (seed 10%)", "after": "after (seed + ledger)", "offline": "offline (all outcomes)"}
    for name, r in results.items():
        shown = f"${r['cost_per_correct']:.7f}" if r["cost_per_correct"] else "-"
        print(f"{labels[name]:<28} {r['apgr']:>6.3f} {r['strong_share']:>17.1%} {shown:>17}")
    for name in ("before", "after"):
        c = results[name]["calibrated"]
        shown = f"${c['cost_per_correct']:.7f}" if c["cost_per_correct"] else "-"
        print(f"{labels[name]} with its own calibrated threshold {c['threshold']:.4f}: strong share "
              f"{c['strong_share']:.1%}, quality {c['quality']:.3f} of always-strong, cost/correct {shown}")


def send_traffic(proxy: str, rows: list[dict[str, Any]], concurrency: int) -> int:
    import asyncio

    async def go() -> int:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for row in rows:
            queue.put_nowait(row)
        ok = 0

        async def one(client: httpx.AsyncClient) -> None:
            nonlocal ok
            while not queue.empty():
                row = queue.get_nowait()
                reply = await client.post("/v1/chat/completions", json={
                    "model": "auto", "messages": [{"role": "user", "content": row["prompt"]}]})
                ok += reply.status_code == 200

        async with httpx.AsyncClient(base_url=proxy, timeout=60) as client:
            await asyncio.gather(*(one(client) for _ in range(concurrency)))
        return ok

    return asyncio.run(go())


if __name__ == "__main__":
    main()
