"""Throughput of one `router worker` process: grade jobs per second against an instant judge.

    python bench/live_worker_throughput.py [--jobs 2000] [--concurrency 8]

Writes the ledger records and queues the grade jobs first, then starts one real `router worker`
process and times it until the queue is empty. The replay upstream's judge answers at once, so
the figure is the worker's own cost per job (Redis calls, one HTTP call to the judge, the verdict
script), the ceiling of one process; a real judge's latency divides by --concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
import uvicorn  # noqa: E402

from bench.live.setup import write_replay_policy  # noqa: E402
from bench.live.upstream import ReplayUpstream, answer_text  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    from redis.asyncio import Redis

    from core.llm import Message
    from policies import load_policy
    from router.ledger import LedgerConfig, LedgerEntry, open_sync_ledger
    from router.live.loop import LiveLoop

    rows = [{"id": f"t{i}", "prompt": f"Problem {i}: how many?", "outcomes": {"weak": {"correct": i % 2 == 0}}}
            for i in range(args.jobs)]
    app = ReplayUpstream(rows)
    port = 18600 + os.getpid() % 300
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    prefix = f"bench-tput-{uuid.uuid4().hex[:6]}:"
    folder = Path(tempfile.mkdtemp())
    policy_path = write_replay_policy(folder / "router.yaml", f"http://127.0.0.1:{port}", grade=1.0, explore=0.0)
    ledger = open_sync_ledger(LedgerConfig(redis_url=args.redis_url, key_prefix=prefix, store_prompts=True))
    entries = []
    for i, row in enumerate(rows):
        entry = LedgerEntry(f"t{i}", time.time(), "p", "weak", "direct", "easy", 0.2, ("openai/weak",), 5, 5, 1e-6,
                            0.01, "ok", prompt=str(row["prompt"]))
        ledger.record(entry)
        entries.append((entry, answer_text(str(i), "number")))

    async def enqueue() -> None:
        policy = load_policy(policy_path)
        client = Redis.from_url(args.redis_url, decode_responses=True)
        loop = LiveLoop(lambda: policy, client, prefix)
        for entry, answer in entries:
            await loop.after_request(entry, [Message(role="user", content=str(entry.prompt))], answer)
            await loop.aclose()  # one at a time: this measures the worker, not a burst of enqueues
        await client.aclose()

    asyncio.run(enqueue())
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    queued = client.xlen(f"{prefix}live:jobs")
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    started = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "-m", "router", "worker", "--config", str(policy_path), "--redis-url",
                               args.redis_url, "--prefix", prefix, "--concurrency", str(args.concurrency),
                               "--max-jobs", str(queued)], env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    worker.wait()
    elapsed = time.perf_counter() - started
    graded = ledger.aggregates("tier")["weak"].graded
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    server.should_exit = True
    print(f"queued {queued} grade jobs; one worker (--concurrency {args.concurrency}) graded {graded} "
          f"in {elapsed:.1f} s including its start-up")
    print(f"throughput: {graded / elapsed:.0f} jobs/s")


if __name__ == "__main__":
    main()
