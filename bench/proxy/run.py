"""Proxy benchmark: p50/p99 latency and max requests/s, direct vs our proxy vs the LiteLLM proxy.

    python bench/proxy/run.py [--prompts short,short-distinct,real] [--litellm PATH] [--requests 3000]
                              [--seconds 15] [--client raw|httpx] [--first-stage 0.01]

Starts, one worker each, on loopback: the upstream stub (bench/proxy/stub.py); `router serve`
with a policy whose tiers all point at the stub; and, when its `litellm` executable is found
(`pip install 'litellm[proxy]'`, ideally in its own virtualenv: it pins other versions of our
dependencies), the LiteLLM proxy with the same stub behind it. Then, one target at a time, at
concurrency 1 and 32: the stub directly; our proxy in pass-through (a tier named as the model:
no classifier); our proxy routing (`model: router`: classifier, policy); the LiteLLM proxy.
Non-streaming requests. Prompt sets (`--prompts`):
- `short`: one short question, repeated: after the first request the proxy's score cache answers;
- `short-distinct`: short questions that differ by their numbers, each sent once (no cache hits);
- `real`: GSM8K and MMLU questions from ../shared/data/routellm/outcomes.jsonl, each sent once,
  300 at c=1 and `--requests` others at c=32 (unmeasured warm-up questions of their own).
With `--first-stage D`, a second `router serve` whose policy adds `classifier: {first_stage:
{disagreement: D}}` (the two-stage score) is measured routing too, beside the first in the same
run, and the decision's stages include the first stage and the share it decides alone at the
policy's cut (0.5). Prints the table, the decision's own latency per stage (tokenize, encode,
classify), and the ratios last. The machine is shared: run it twice before believing a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import CLIENTS, LoadResult, run_load

REPO = Path(__file__).resolve().parents[2]
QUESTION = {"role": "user", "content": "What is 17 times 23? Answer with the number only."}

POLICY = """
tiers:
  - name: cheap
    backend: litellm
    model: openai/stub
    api_base: {stub}
    price: {{input_per_million: 0.15, output_per_million: 0.60}}
    max_tokens: 256
    expected_output_tokens: 64
  - name: strong
    backend: litellm
    model: openai/stub-strong
    api_base: {stub}
    price: {{input_per_million: 2.50, output_per_million: 10.0}}
    max_tokens: 256
    expected_output_tokens: 64
rules:
  - name: easy
    when: {{difficulty: {{min: 0.0, max: 0.5}}}}
    tier: cheap
  - name: hard
    when: {{difficulty: {{min: 0.5, max: 1.0}}}}
    tier: strong
  - name: default
    tier: cheap
"""

CUTS = (0.5,)  # the policy's one threshold
FIRST_STAGE = "classifier:\n  first_stage: {{disagreement: {disagreement}}}\n"

LITELLM_CONFIG = """
model_list:
  - model_name: stub
    litellm_params:
      model: openai/stub
      api_base: {stub}
      api_key: dummy
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """Wait until `url` answers 200 (GET), or fail if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}; see its log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up in {timeout_s:.0f} s")


@contextmanager
def started(command: list[str], health: str, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run `command` until the block ends; its output goes to `log`."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        try:
            wait_http(health, process)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


REAL_PER_RUN = 300
SHARED = REPO.parent / "shared" / "data" / "routellm" / "outcomes.jsonl"


@dataclass(frozen=True)
class PromptSet:
    """The user messages of one benchmark: per concurrency level, and unmeasured warm-up ones."""

    name: str
    runs: dict[int, list[str]]
    warmup: list[str]
    repeated: bool  # one message sent again and again (the score cache answers after the first)


def real_questions(count: int) -> list[str]:
    """`count` distinct GSM8K and MMLU questions from the shared data, in a fixed shuffled order."""
    import random

    from classifiers.loaders import load_records

    if not SHARED.is_file():
        raise SystemExit(f"--prompts real needs {SHARED} (see ../shared/data/README.md)")
    prompts = list(dict.fromkeys(record.prompt for record in load_records(SHARED).records))
    random.Random(0).shuffle(prompts)
    return prompts[:count]


def prompt_set(kind: str, requests: int) -> PromptSet:
    """The prompts of `kind` (see the module docstring)."""
    if kind == "short":
        return PromptSet(kind, {1: [QUESTION["content"]], 32: [QUESTION["content"]]}, [QUESTION["content"]] * 20, True)
    if kind == "short-distinct":
        numbers = iter(range(10**6))

        def make(count: int) -> list[str]:
            return [f"What is {next(numbers)} times 23? Answer with the number only." for _ in range(count)]

        return PromptSet(kind, {1: make(requests // 4), 32: make(requests)}, make(20), False)
    if kind == "real":
        # At c=32, 300 requests last half a second: `requests` others (3,000 by default) make a
        # throughput figure that holds from run to run.
        questions = real_questions(REAL_PER_RUN + max(REAL_PER_RUN, requests) + 20)
        runs = {1: questions[:REAL_PER_RUN], 32: questions[REAL_PER_RUN:-20]}
        return PromptSet(kind, runs, questions[-20:], False)
    raise SystemExit(f"unknown prompt set {kind!r}: use short, short-distinct or real")


def measure(
    name: str, url: str, model: str, prompts: PromptSet, args: argparse.Namespace, metrics_url: str | None = None
) -> tuple[dict[int, LoadResult], dict[int, tuple[float, float]]]:
    """Both concurrency levels against one target; with `metrics_url`, the classifier's figures of each."""

    def body(text: str) -> dict[str, object]:
        return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 32}

    results: dict[int, LoadResult] = {}
    classifier: dict[int, tuple[float, float]] = {}
    warmup = [body(text) for text in prompts.warmup]
    for concurrency, requests in ((1, args.requests // 4), (32, args.requests)):
        before = httpx.get(metrics_url).text if metrics_url else ""
        bodies = [body(text) for text in prompts.runs[concurrency]]
        result = asyncio.run(
            run_load(
                url, bodies[0] if prompts.repeated else bodies, concurrency=concurrency, requests=requests,
                max_seconds=args.seconds, client=args.client, warmup=warmup,
            )
        )
        results[concurrency] = result
        print(
            f"  {name:<22} c={concurrency:<2} {result.requests:>5} ok {result.errors:>3} err  "
            f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  {result.rps:7.0f} req/s",
            flush=True,
        )
        if metrics_url:
            classifier[concurrency] = classifier_wait(before, httpx.get(metrics_url).text)
    return results, classifier


def decision_stages(
    prompts: dict[str, list[str]], first_stage: float | None = None
) -> dict[str, dict[str, tuple[float, float]]]:
    """p50 and p99 ms of each stage of the decision, one prompt at a time, as the proxy loads it.

    Stages: tokenize, encode (onnxruntime), classify (logistic + kNN on the vector, then the
    score), and the whole `predict_score` call. No score cache here: every prompt is computed.
    With `first_stage` (a disagreement): the first stage alone (static encoder + logistic), the
    whole two-stage call at the bench policy's cut, and the share the first stage decided (in
    the p50 slot, as a fraction).
    """
    import numpy as np

    from classifiers.estimator import DifficultyClassifier
    from classifiers.onnx_encoder import OnnxEncoder
    from router.server.scoring import default_classifier_loader

    # As the proxy loads it: one encoder thread, and BLAS held to one thread for the whole process.
    classifier = default_classifier_loader(None, None)
    assert isinstance(classifier, DifficultyClassifier)
    encoder = classifier.encoder
    classifier.predict_score(["warm-up"])
    two_stage = None
    if first_stage is not None:
        from classifiers.two_stage import load_first_stage

        two_stage = load_first_stage(None, classifier, disagreement=first_stage)
        two_stage.first.predict_score(["warm-up"])
    found: dict[str, dict[str, tuple[float, float]]] = {}
    for name, texts in prompts.items():
        times: dict[str, list[float]] = {"tokenize": [], "encode": [], "classify": [], "whole decision": []}
        for text in texts:
            if isinstance(encoder, OnnxEncoder):
                began = time.perf_counter()
                ids, mask = encoder.tokenize([text])
                tokenized = time.perf_counter()
                vectors = encoder.embed_tokens(ids, mask)
                encoded = time.perf_counter()
                proba = classifier.predict_proba_embeddings(vectors)
                _ = 1.0 - proba[:, 0]
                times["tokenize"].append(tokenized - began)
                times["encode"].append(encoded - tokenized)
                times["classify"].append(time.perf_counter() - encoded)
            began = time.perf_counter()
            classifier.predict_score([text])
            times["whole decision"].append(time.perf_counter() - began)
            if two_stage is not None:
                began = time.perf_counter()
                two_stage.first.predict_score([text])
                times.setdefault("first stage", []).append(time.perf_counter() - began)
                began = time.perf_counter()
                two_stage.predict_score([text], "difficulty", CUTS)
                times.setdefault("whole two-stage decision", []).append(time.perf_counter() - began)
        found[name] = {
            stage: (float(np.percentile(values, 50)) * 1000, float(np.percentile(values, 99)) * 1000)
            for stage, values in times.items() if values
        }
        if two_stage is not None:
            decided = two_stage.counts.first / max(1, two_stage.counts.first + two_stage.counts.second)
            found[name]["first-stage share"] = (decided, decided)
            two_stage.counts.first = two_stage.counts.second = 0
    return found


def classifier_wait(before: str, after: str) -> tuple[float, float]:
    """Mean classifier wait per request (ms) and mean batch size between two scrapes of /metrics."""

    def values(metrics: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for line in metrics.splitlines():
            if line.startswith(("router_classifier_latency_seconds_", "router_classifier_batch_size_")):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    old, new = values(before), values(after)

    def delta(name: str) -> float:
        return new.get(name, 0.0) - old.get(name, 0.0)

    wait = delta("router_classifier_latency_seconds_sum") / max(1.0, delta("router_classifier_latency_seconds_count"))
    size = delta("router_classifier_batch_size_sum") / max(1.0, delta("router_classifier_batch_size_count"))
    return wait * 1000, size


def gc_summary(metrics: str) -> str:
    """Collections and mean pause per generation in our proxy, from /metrics."""
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(("router_gc_pause_seconds_count", "router_gc_pause_seconds_sum")):
            name, _, value = line.rpartition(" ")
            generation = name.split('generation="')[1].split('"')[0]
            (counts if "_count" in name else sums)[generation] = float(value)
    return ", ".join(
        f"gen{g}: {counts[g]:.0f} collections, mean {1000 * sums.get(g, 0) / counts[g]:.2f} ms"
        for g in sorted(counts) if counts[g]
    ) or "no collections"


def main() -> None:
    """Run everything and print the table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", default="short,short-distinct,real", help="comma-separated prompt sets")
    parser.add_argument("--litellm", default=shutil.which("litellm"), help="the LiteLLM proxy executable")
    parser.add_argument("--requests", type=int, default=3000, help="requests at concurrency 32 (a quarter at 1)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time cap per run")
    parser.add_argument("--client", choices=CLIENTS, default="raw", help="load generator client (see loadgen.py)")
    parser.add_argument(
        "--ledger-redis", metavar="URL",
        help="also measure our pass-through with the Redis ledger on (REDIS_URL=URL); the other runs use the "
        "embedded in-memory ledger",
    )
    parser.add_argument("--first-stage", type=float, default=None, metavar="D",
                        help="also measure routing with the two-stage score at this disagreement")
    args = parser.parse_args()
    sets = [prompt_set(kind.strip(), args.requests) for kind in args.prompts.split(",") if kind.strip()]
    for name in ("REDIS_URL", "ROUTER_REDIS_URL"):  # the plain runs use the in-memory ledger, whatever the shell says
        os.environ.pop(name, None)
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    stub_port, ours_port, litellm_port = free_port(), free_port(), free_port()
    stub = f"http://127.0.0.1:{stub_port}/v1"
    (work / "router.yaml").write_text(POLICY.format(stub=stub))
    if args.first_stage is not None:
        (work / "router-two-stage.yaml").write_text(
            FIRST_STAGE.format(disagreement=args.first_stage) + POLICY.format(stub=stub)
        )
    (work / "litellm.yaml").write_text(LITELLM_CONFIG.format(stub=stub))
    print(f"logs in {work}; one worker each; non-streaming; loopback; {args.client} client", flush=True)

    table: dict[str, dict[int, LoadResult]] = {}
    inside: dict[str, dict[int, tuple[float, float]]] = {}
    first = sets[0]
    with started([sys.executable, str(Path(__file__).parent / "stub.py"), "--port", str(stub_port)],
                 f"{stub}/models", work / "stub.log"):
        for prompts in sets:
            table[f"stub (direct) [{prompts.name}]"], _ = measure(
                f"stub [{prompts.name}]", f"{stub}/chat/completions", "stub", prompts, args
            )
        ours = f"http://127.0.0.1:{ours_port}"
        with started([sys.executable, "-m", "router", "serve", "--config", str(work / "router.yaml"),
                      "--port", str(ours_port), "--log-level", "warning"], f"{ours}/healthz", work / "router.log",
                     {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}):
            for prompts in sets:
                table[f"router pass-through [{prompts.name}]"], _ = measure(
                    f"pass-through [{prompts.name}]", f"{ours}/v1/chat/completions", "cheap", prompts, args
                )
                table[f"router routing [{prompts.name}]"], inside[prompts.name] = measure(
                    f"routing [{prompts.name}]", f"{ours}/v1/chat/completions", "router", prompts, args,
                    f"{ours}/metrics",
                )
            collections = gc_summary(httpx.get(f"{ours}/metrics").text)
        if args.first_stage is not None:
            with started([sys.executable, "-m", "router", "serve", "--config", str(work / "router-two-stage.yaml"),
                          "--port", str(ours_port), "--log-level", "warning"], f"{ours}/healthz",
                         work / "router-two-stage.log", {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}):
                for prompts in sets:
                    table[f"router routing, two-stage [{prompts.name}]"], inside[f"{prompts.name}, two-stage"] = measure(
                        f"routing, two-stage [{prompts.name}]", f"{ours}/v1/chat/completions", "router", prompts,
                        args, f"{ours}/metrics",
                    )
        if args.ledger_redis:
            prefix = f"bench-{os.getpid()}:"
            with started([sys.executable, "-m", "router", "serve", "--config", str(work / "router.yaml"),
                          "--port", str(ours_port), "--log-level", "warning"], f"{ours}/healthz",
                         work / "router-redis.log",
                         {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "REDIS_URL": args.ledger_redis,
                          "ROUTER_REDIS_PREFIX": prefix}):
                table[f"router pass-through, Redis ledger [{first.name}]"], _ = measure(
                    "pass-through+Redis", f"{ours}/v1/chat/completions", "cheap", first, args
                )
                recorded = [line for line in httpx.get(f"{ours}/metrics").text.splitlines()
                            if line.startswith('router_ledger{stat="recorded"}')]
                print(f"  Redis ledger: {recorded[0] if recorded else 'no ledger metric'} (prefix {prefix})", flush=True)
            import redis

            client = redis.Redis.from_url(args.ledger_redis)
            doomed = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for start in range(0, len(doomed), 500):  # leave the shared Redis as we found it
                client.delete(*doomed[start : start + 500])
            client.close()
        if args.litellm:
            litellm_url = f"http://127.0.0.1:{litellm_port}"
            env = {"LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                   "LITELLM_LOG": "ERROR"}
            with started([args.litellm, "--config", str(work / "litellm.yaml"), "--port", str(litellm_port),
                          "--num_workers", "1", "--telemetry", "False"],
                         f"{litellm_url}/health/liveliness", work / "litellm.log", env):
                table[f"LiteLLM proxy [{first.name}]"], _ = measure(
                    "LiteLLM proxy", f"{litellm_url}/v1/chat/completions", "stub", first, args
                )
        else:
            print("  LiteLLM proxy: no `litellm` executable found (--litellm PATH); skipped", flush=True)

    stage_prompts = {p.name: (p.runs[1] if not p.repeated else p.runs[1] * 100)[:300] for p in sets}
    stages = decision_stages(stage_prompts, args.first_stage)
    print("\nthe decision alone, one prompt at a time, score cache off (p50 / p99 ms):")
    for name, figures in stages.items():
        print(f"  [{name}] " + "; ".join(f"{stage} {p50:.2f} / {p99:.2f}" if stage != "first-stage share"
                                         else f"{stage} {p50:.3f}" for stage, (p50, p99) in figures.items()))
    for name, waits in inside.items():
        for concurrency, (wait_ms, batch) in waits.items():
            print(f"classifier inside the proxy, routing [{name}] at c={concurrency}: {wait_ms:.2f} ms mean wait per "
                  f"scored request, {batch:.1f} prompts per batch")
    print(f"garbage collection in our proxy over all its runs: {collections}")

    print("\n| target | c=1 p50 ms | c=1 p99 ms | c=32 p50 ms | c=32 p99 ms | max req/s (c=32) | added p50 c=1 ms | p99/p50 c=32 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, result in table.items():
        direct = table[f"stub (direct) [{name.rsplit('[', 1)[1]}"]
        added = result[1].p50_ms - direct[1].p50_ms
        print(
            f"| {name} | {result[1].p50_ms:.2f} | {result[1].p99_ms:.2f} | {result[32].p50_ms:.1f} | "
            f"{result[32].p99_ms:.1f} | {result[32].rps:.0f} | {added:+.2f} | {result[32].p99_ms / result[32].p50_ms:.2f} |"
        )
    print("\nratios (same machine, same run):")
    redis_row = f"router pass-through, Redis ledger [{first.name}]"
    if redis_row in table:
        off, on = table[f"router pass-through [{first.name}]"], table[redis_row]
        print(f"  Redis ledger on vs in-memory: {on[32].rps / off[32].rps:.2f}x the req/s at c=32; "
              f"{on[1].p50_ms - off[1].p50_ms:+.2f} ms p50 at c=1")
    if f"LiteLLM proxy [{first.name}]" in table:
        lite, direct = table[f"LiteLLM proxy [{first.name}]"], table[f"stub (direct) [{first.name}]"]
        ours_result = table[f"router routing [{first.name}]"]
        print(f"  routing [{first.name}] vs LiteLLM proxy: {ours_result[32].rps / lite[32].rps:.2f}x its req/s; "
              f"{(ours_result[1].p50_ms - direct[1].p50_ms) / (lite[1].p50_ms - direct[1].p50_ms):.2f}x its added p50 (c=1)")
    for prompts in sets:
        passing = table[f"router pass-through [{prompts.name}]"]
        for label in ("routing", "routing, two-stage"):
            routing = table.get(f"router {label} [{prompts.name}]")
            if routing is None:
                continue
            print(f"  [{prompts.name}] {label} adds {routing[1].p50_ms - passing[1].p50_ms:+.2f} ms p50 and "
                  f"{routing[1].p99_ms - passing[1].p99_ms:+.2f} ms p99 over pass-through at c=1; at c=32 it serves "
                  f"{routing[32].rps:.0f} req/s, {routing[32].rps / passing[32].rps:.0%} of pass-through's {passing[32].rps:.0f}")

if __name__ == "__main__":
    main()
