"""`router worker`: consume live jobs, judge answers, explore other tiers, write verdicts to the ledger.

Each job is handled in idempotent steps, so that a job reclaimed from a dead worker (or retried
after Redis came back) redoes only the step that was in flight:

1. explore (explore jobs): for each tier not yet recorded for this request, answer the prompt with
   that tier and record it in the ledger (request id `<id>~<tier>`, rule `forced`: a random sample
   of traffic through that tier, which is what the report's always-<tier> points want); the answer
   text is kept beside it for a day, so a retry can still judge it;
2. judge every answer (the proxy's, and the explored ones) whose `judge` verdict is not written;
3. agreement: for number/choice answers, each explored tier against the strongest tier's answer;
4. acknowledge and delete the job.

A grade job whose request the ledger does not know yet (the proxy's write is still buffered)
is left unacknowledged and taken up again after `min_idle_s`, until `record_wait_s` has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import BackendError, ConfigError, DataError
from core.llm import GenerationParams, Message
from core.names import FORCED_RULE
from policies.policy import Policy
from router.execution import BackendProvider, Executor, RequestOptions
from router.ledger.config import LedgerConfig
from router.ledger.entry import LedgerEntry
from router.live.jobs import Job
from router.live.judge import agreement, detect_answer_type, judge_messages, parse_verdict
from router.live.metrics import WorkerMetrics
from router.live.queue import Delivery, JobQueue
from router.live.verdicts import VerdictWriter
from strategies.extraction import AnswerType

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

ANSWER_TTL_S = 86_400
SOURCE_JUDGE = "judge"
SOURCE_AGREEMENT = "agreement"

# The current policy: a PolicyStore's (hot-reloaded), or a fixed one.
PolicySource = Callable[[], Policy]


def explored_id(request_id: str, tier: str) -> str:
    """The ledger request id of `tier`'s exploration answer to request `request_id`."""
    return f"{request_id}~{tier}"


@dataclass
class Outcome:
    """What handling one job did (for counters and tests)."""

    acked: bool = True
    counts: Counter[str] = field(default_factory=Counter)


class Worker:
    """One consumer of the live queue; run several (processes, machines) to share the work."""

    def __init__(
        self,
        redis: Redis,
        policy: PolicySource,
        backends: BackendProvider,
        ledger: LedgerConfig,
        *,
        consumer: str,
        concurrency: int = 4,
        min_idle_s: float = 30.0,
        record_wait_s: float = 120.0,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.policy_source = policy
        self.queue = JobQueue(redis, ledger.key_prefix)
        self.writer = VerdictWriter(redis, ledger)
        self.executor = Executor(backends)
        self.backends = backends
        self.consumer = consumer
        self.concurrency = concurrency
        self.min_idle_s = min_idle_s
        self.record_wait_s = record_wait_s
        self.metrics = metrics or WorkerMetrics()
        self.totals: Counter[str] = Counter()

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, max_jobs: int | None = None, block_ms: int = 1000) -> None:
        """Consume until `stop` is set (or max_jobs acknowledged); rides out Redis outages with backoff."""
        backoff = 0.1
        last_claim = 0.0
        while not stop.is_set() and (max_jobs is None or self.totals["jobs"] < max_jobs):
            try:
                await self.queue.ensure_group()
                deliveries: list[Delivery] = []
                if time.monotonic() - last_claim >= min(self.min_idle_s, 5.0):
                    deliveries = await self.queue.reclaim(self.consumer, self.min_idle_s, self.concurrency)
                    last_claim = time.monotonic()
                    if deliveries:
                        self.metrics.reclaimed.inc(len(deliveries))
                        self.totals["reclaimed"] += len(deliveries)
                    await self._housekeeping()
                if not deliveries:
                    deliveries = await self.queue.read(self.consumer, self.concurrency, block_ms)
                backoff = 0.1
            except (RedisConnectionError, RedisTimeoutError, OSError) as error:
                logger.warning("worker: Redis unreachable (%s); retrying in %.1f s", error, backoff)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if deliveries:
                await asyncio.gather(*(self._handle_safely(d) for d in deliveries))

    async def _housekeeping(self) -> None:
        """Gauges from Redis, and prompt retention: records older than ledger.retention_days leave the stream."""
        self.metrics.depth.set(await self.queue.depth())
        self.metrics.shed.set((await self.queue.stats()).get("shed", 0))
        retention = self.policy_source().config.ledger.retention_days
        if retention is not None:
            oldest_ms = int((time.time() - retention * 86_400) * 1000)
            await self.redis.xtrim(self.writer.keys.stream, minid=str(oldest_ms), approximate=True)

    async def _handle_safely(self, delivery: Delivery) -> None:
        try:
            outcome = await self.handle(delivery)
        except (RedisError, OSError) as error:  # left pending: reclaimed after min_idle_s
            logger.warning("worker: job %s interrupted by Redis (%s); it will be retried", delivery.id, error)
            self.totals["interrupted"] += 1
            return
        self.totals.update(outcome.counts)
        if outcome.acked:
            self.totals["jobs"] += 1
            self.metrics.jobs.labels("done").inc()
        else:
            self.metrics.jobs.labels("deferred").inc()
        if outcome.counts:
            await self.queue.count(dict(outcome.counts))

    # -- one job --------------------------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> Outcome:
        """Process one delivered job; acknowledges it unless it must wait for its ledger record."""
        outcome = Outcome()
        try:
            job = Job.from_json(delivery.payload)
        except DataError as error:
            logger.error("worker: dropping job %s: %s", delivery.id, error)
            outcome.counts["malformed"] += 1
            await self.queue.ack(delivery.id)
            return outcome
        policy = self.policy_source()
        if not await self.writer.recorded(job.request_id):
            if time.time() - job.enqueued_at < self.record_wait_s:
                outcome.acked = False  # the proxy's ledger write is still on its way
                return outcome
            outcome.counts["unknown_request"] += 1
            await self.queue.ack(delivery.id)
            return outcome
        answers: dict[str, tuple[str, str]] = {job.tier: (job.request_id, job.answer)}
        if job.kind == "explore":
            answers.update(await self._explore(policy, job, outcome))
        answer_type = self._answer_type(policy, job)
        for tier, (request_id, text) in answers.items():
            await self._judge(policy, job, tier, request_id, text, answer_type, outcome)
        if job.kind == "explore" and policy.config.grading.agreement and answer_type != "text":
            await self._agree(policy, answers, answer_type, outcome)
        await self.queue.ack(delivery.id)
        return outcome

    @staticmethod
    def _answer_type(policy: Policy, job: Job) -> AnswerType:
        configured = policy.config.grading.answer_type
        return detect_answer_type(job.prompt, job.answer) if configured == "auto" else configured

    async def _within_budget(self, kind: str, budget: float | None, outcome: Outcome) -> bool:
        if budget is None or await self.writer.spent_today(kind) < budget:
            return True
        outcome.counts[f"{kind}_over_budget"] += 1
        return False

    async def _explore(self, policy: Policy, job: Job, outcome: Outcome) -> dict[str, tuple[str, str]]:
        config = policy.config.exploration
        wanted = config.tiers or list(policy.tier_names)
        found: dict[str, tuple[str, str]] = {}
        for tier in wanted:
            if tier == job.tier or tier not in policy.tier_names:
                continue
            request_id = explored_id(job.request_id, tier)
            answer_key = f"{self.queue.keys.prefix}live:answer:{request_id}"
            if await self.writer.recorded(request_id):  # a retry: explored before the crash
                kept = await self.redis.get(answer_key)
                if kept is not None:
                    found[tier] = (request_id, str(kept))
                continue
            if not await self._within_budget("exploration", config.daily_budget_usd, outcome):
                break
            started = time.perf_counter()
            try:
                result = await self.executor.run(policy, policy.forced(tier, job.prompt), job.messages, RequestOptions())
            except BackendError as error:
                logger.warning("worker: exploring %s with tier %s failed: %s", job.request_id, tier, error)
                outcome.counts["explore_failed"] += 1
                continue
            await self.writer.spend("exploration", result.cost_usd)
            outcome.counts["explored"] += 1
            self.metrics.explored.labels(tier).inc()
            self.metrics.spent.labels("exploration").inc(result.cost_usd)
            if result.tier != tier:  # a fallback answered: not this tier's counterfactual
                outcome.counts["explore_fell_back"] += 1
                continue
            await self.redis.set(answer_key, result.text, ex=ANSWER_TTL_S)
            await self.writer.record(LedgerEntry(
                request_id=request_id, timestamp=time.time(), policy_version=job.policy_version, tier=tier,
                strategy=result.strategy, rule=FORCED_RULE, difficulty=job.difficulty, models=result.models,
                input_tokens=result.input_tokens, output_tokens=result.output_tokens, cost_usd=result.cost_usd,
                latency_s=time.perf_counter() - started, status="ok", key_tag=job.key_tag, app=job.app,
                prompt=job.prompt, source=job.source, extra={"explores": job.request_id},
            ))
            found[tier] = (request_id, result.text)
        return found

    async def _judge(
        self, policy: Policy, job: Job, tier: str, request_id: str, answer: str, answer_type: AnswerType,
        outcome: Outcome,
    ) -> None:
        config = policy.config.grading
        judge = config.judge_tier
        if judge is None or await self.writer.done(request_id, SOURCE_JUDGE, tier):
            return
        if not await self._within_budget("grading", config.daily_budget_usd, outcome):
            return
        tier_config = policy.tier(judge)
        backend = await self.backends.for_tier(tier_config, policy.price(judge))
        params = GenerationParams(max_tokens=config.max_tokens, temperature=0.0, timeout_s=tier_config.timeout_s)
        try:
            completion = (await backend.generate(judge_messages(_question(job.messages), answer, answer_type), params))[0]
        except BackendError as error:
            logger.warning("worker: judging %s failed: %s", request_id, error)
            outcome.counts["judge_failed"] += 1
            return
        await self.writer.spend("grading", completion.cost_usd)
        self.metrics.spent.labels("grading").inc(completion.cost_usd)
        score = parse_verdict(completion.text)
        if score is None:
            outcome.counts["judge_unparsed"] += 1
            return
        await self._write(request_id, tier, score, SOURCE_JUDGE, outcome)

    async def _agree(
        self, policy: Policy, answers: dict[str, tuple[str, str]], answer_type: AnswerType, outcome: Outcome
    ) -> None:
        strongest = next((t for t in reversed(policy.tiers_by_cost) if t in answers), None)
        if strongest is None:
            return
        reference = answers[strongest][1]
        for tier, (request_id, text) in answers.items():
            if tier == strongest or await self.writer.done(request_id, SOURCE_AGREEMENT, tier):
                continue
            score = agreement(text, reference, answer_type)
            if score is not None:
                await self._write(request_id, tier, score, SOURCE_AGREEMENT, outcome)

    async def _write(self, request_id: str, tier: str, score: float, source: str, outcome: Outcome) -> None:
        result = await self.writer.verdict(request_id, tier, score, source)
        if result < 0:
            outcome.counts["duplicate_verdicts"] += 1
        elif result == 0:
            outcome.counts["unknown_request"] += 1
        else:
            outcome.counts[f"graded:{tier}:{source}"] += 1
            self.metrics.graded.labels(tier, source).inc()
            self.metrics.correct.labels(tier, source).inc(score)


def _question(messages: Sequence[Message]) -> str:
    """The conversation as the judge sees it: the whole exchange when there are several turns."""
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"[{m['role']}] {m['content']}" for m in turns)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def check_live_config(policy: Policy) -> None:
    """Tier names in grading/exploration must exist; raise ConfigError naming the key otherwise."""
    config = policy.config
    judge = config.grading.judge_tier
    if judge is not None and judge not in policy.tier_names:
        raise ConfigError(f"grading.judge_tier: no tier named {judge!r}; the tiers are: {', '.join(policy.tier_names)}.")
    for tier in config.exploration.tiers or ():
        if tier not in policy.tier_names:
            raise ConfigError(
                f"exploration.tiers: no tier named {tier!r}; the tiers are: {', '.join(policy.tier_names)}."
            )
