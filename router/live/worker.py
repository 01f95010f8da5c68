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

A shadow job (router.live.shadow) instead: judges the live answer, classifies and decides the prompt
with the candidate policy, answers it with the candidate's plan (the live answer stands for both
when the candidate chose exactly the live plan), judges that answer, and writes one paired row.
Each step's result is kept until the row is written, so a retried job redoes only the rest.

A grade job whose request the ledger does not know yet (the proxy's write is still buffered)
is left unacknowledged and taken up again after `min_idle_s`, until `record_wait_s` has passed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import BackendError, ConfigError, DataError, PolicyError
from core.llm import GenerationParams, Message
from core.names import FORCED_RULE
from policies.loader import load_policy, parse_policy
from policies.policy import Decision, Policy
from router.execution import BackendProvider, Executor, RequestOptions
from router.ledger.config import LedgerConfig
from router.ledger.entry import LedgerEntry
from router.live.jobs import Job
from router.live.judge import agreement, detect_answer_type, judge_messages, parse_verdict
from router.live.metrics import WorkerMetrics
from router.live.queue import Delivery, JobQueue
from router.live.shadow import ShadowRow, ShadowStore, section_candidate
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


class Scorer(Protocol):
    """A classifier as the worker needs it: a score per text (a shadowed candidate with a classifier of its own)."""

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> Any:
        """Scores in [0, 1] for `texts`."""
        ...


ClassifierLoader = Callable[[Path | None, str | None], Scorer]


def default_classifier_loader(path: Path | None, embedding_model: str | None) -> Scorer:
    """The artifact at `path` (None: the shipped one) with its encoder."""
    from classifiers import load_classifier  # here: only a candidate with another classifier needs one

    classifier: Scorer = load_classifier(path, embedding_model=embedding_model)
    return classifier


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
        classifier_loader: ClassifierLoader = default_classifier_loader,
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
        self.shadow = ShadowStore(redis, ledger.key_prefix)
        self.classifier_loader = classifier_loader
        self._candidates: dict[str, Policy | None] = {}  # version -> parsed candidate (None: it does not parse)
        self._scorers: dict[tuple[Path | None, str | None], Scorer] = {}
        self._loading = asyncio.Lock()

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
        if job.kind == "shadow":
            await self._shadow(policy, job, answer_type, outcome)
            await self.queue.ack(delivery.id)
            return outcome
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
        score = await self._ask_judge(policy, job.messages, request_id, answer, answer_type, "grading", outcome)
        if score is not None:
            await self._write(request_id, tier, score, SOURCE_JUDGE, outcome)

    async def _ask_judge(
        self, policy: Policy, messages: Sequence[Message], request_id: str, answer: str, answer_type: AnswerType,
        kind: str, outcome: Outcome,
    ) -> float | None:
        """The judge tier's verdict on one answer (its cost spent as `kind`); None when it gave none."""
        config = policy.config.grading
        judge = config.judge_tier
        if judge is None:
            return None
        tier_config = policy.tier(judge)
        backend = await self.backends.for_tier(tier_config, policy.price(judge))
        params = GenerationParams(max_tokens=config.max_tokens, temperature=0.0, timeout_s=tier_config.timeout_s)
        try:
            completion = (await backend.generate(judge_messages(_question(messages), answer, answer_type), params))[0]
        except BackendError as error:
            logger.warning("worker: judging %s failed: %s", request_id, error)
            outcome.counts["judge_failed"] += 1
            return None
        await self.writer.spend(kind, completion.cost_usd)
        self.metrics.spent.labels(kind).inc(completion.cost_usd)
        score = parse_verdict(completion.text)
        if score is None:
            outcome.counts["judge_unparsed"] += 1
        return score

    # -- shadow jobs ----------------------------------------------------------------------------------

    async def _shadow(self, policy: Policy, job: Job, answer_type: AnswerType, outcome: Outcome) -> None:
        """Answer and judge the request as the candidate policy would, and write the paired row once."""
        version = str(job.extra.get("candidate") or "")
        candidate = await self._candidate(version)
        if candidate is None:
            outcome.counts["shadow_unknown_candidate"] += 1
            return
        if await self.shadow.has_row(version, job.request_id):
            outcome.counts["shadow_duplicate"] += 1
            return
        budget = job.extra.get("budget")
        if not await self._within_budget("shadow", None if budget is None else float(budget), outcome):
            return
        done: dict[str, Any] = {k: json.loads(v) for k, v in (await self.shadow.work(version, job.request_id)).items()}
        # 1. the live answer's verdict, also the live request's judge verdict in the ledger
        if "live" not in done:
            done["live"] = await self._ask_judge(
                policy, job.messages, job.request_id, job.answer, answer_type, "shadow", outcome
            )
            await self.shadow.save_work(version, job.request_id, live=done["live"])
        live_correct: float | None = done["live"]
        if live_correct is not None and not await self.writer.done(job.request_id, SOURCE_JUDGE, job.tier):
            await self._write(job.request_id, job.tier, live_correct, SOURCE_JUDGE, outcome)
        # 2. the candidate's decision
        difficulty = await self._candidate_difficulty(policy, candidate, job)
        metadata = job.extra.get("metadata")
        requested = job.extra.get("requested_model")
        decision = candidate.decide(
            _conversation(job.messages), difficulty, metadata if isinstance(metadata, Mapping) else None,
            str(requested) if requested is not None else None,
        )
        same = _same_plan(policy, candidate, job, decision)
        # 3. the candidate's answer and its verdict
        if same:
            tier, cost, correct = job.tier, job.cost_usd or 0.0, live_correct
        else:
            if "candidate" not in done:
                try:
                    result = await self.executor.run(candidate, decision, job.messages, RequestOptions())
                except BackendError as error:
                    logger.warning("worker: shadowing %s with candidate %s failed: %s", job.request_id, version, error)
                    outcome.counts["shadow_failed"] += 1
                    return
                await self.writer.spend("shadow", result.cost_usd)
                self.metrics.spent.labels("shadow").inc(result.cost_usd)
                done["candidate"] = [result.tier, result.cost_usd, result.text]
                await self.shadow.save_work(version, job.request_id, candidate=done["candidate"])
            tier, cost, text = str(done["candidate"][0]), float(done["candidate"][1]), str(done["candidate"][2])
            if "candidate_verdict" not in done:
                done["candidate_verdict"] = await self._ask_judge(
                    policy, job.messages, f"{job.request_id} (candidate)", text, answer_type, "shadow", outcome
                )
                await self.shadow.save_work(version, job.request_id, candidate_verdict=done["candidate_verdict"])
            correct = done["candidate_verdict"]
        row = ShadowRow(
            request_id=job.request_id, timestamp=job.enqueued_at, live_tier=job.tier, live_cost_usd=job.cost_usd or 0.0,
            live_correct=live_correct, candidate_tier=tier, candidate_cost_usd=cost, candidate_correct=correct,
            same_plan=same, difficulty=job.difficulty, candidate_difficulty=difficulty,
        )
        if await self.shadow.add_row(version, row):
            outcome.counts["shadow_rows"] += 1
            self.metrics.shadowed.labels("same" if same else "different").inc()
        else:
            outcome.counts["shadow_duplicate"] += 1

    async def _candidate(self, version: str) -> Policy | None:
        """The candidate policy of a version, parsed once per process; None when unknown or invalid."""
        if version in self._candidates:
            return self._candidates[version]
        found = await self.shadow.candidate_text(version) if version else None
        if found is None:
            logger.error("worker: shadow candidate %r is not in Redis (expired, or never published)", version)
            return None  # not cached: the proxy may publish it a moment later
        text, source = found
        try:
            candidate: Policy | None = parse_policy(text, source=source)
        except PolicyError as error:
            logger.error("worker: shadow candidate %s (%s) is not a valid policy, its jobs are dropped: %s",
                         version, source, error)
            candidate = None
        self._candidates[version] = candidate
        return candidate

    async def _candidate_difficulty(self, live: Policy, candidate: Policy, job: Job) -> float:
        """The candidate classifier's score of the prompt: the live one's when both use the same classifier."""
        if job.difficulty is not None and _classifier_of(candidate) == _classifier_of(live):
            return job.difficulty
        key = (candidate.classifier_path, candidate.config.classifier.embedding_model)
        async with self._loading:  # concurrent jobs load a classifier once
            scorer = self._scorers.get(key)
            if scorer is None:
                scorer = await asyncio.to_thread(self.classifier_loader, *key)
                self._scorers[key] = scorer
        scores = await asyncio.to_thread(scorer.predict_score, [job.prompt], candidate.config.classifier.score)
        return float(scores[0])

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


def _conversation(messages: Sequence[Message]) -> str:
    """All message text, as the proxy hands it to `Policy.decide` (rules on prompt length read it)."""
    return "\n".join(message["content"] for message in messages)


def _classifier_of(policy: Policy) -> tuple[Path | None, str | None, str]:
    path = policy.classifier_path
    config = policy.config.classifier
    return (None if path is None else path.resolve(), config.embedding_model, config.score)


def _same_plan(live: Policy, candidate: Policy, job: Job, decision: Decision) -> bool:
    """True when the candidate would run exactly what answered: same tier, same settings, the same policy
    version on this worker as on the proxy. The live answer is then a fair draw of the candidate's."""
    tier = decision.tier
    return (
        job.policy_version == live.version and tier == job.tier and tier in live.tier_names
        and candidate.tier(tier) == live.tier(tier) and candidate.fallbacks(tier) == live.fallbacks(tier)
        and candidate.escalation(tier) == live.escalation(tier)
    )


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
    candidate = section_candidate(policy)
    if candidate is not None:
        if judge is None:
            raise ConfigError("shadow: both answers are graded by the judge: set grading.judge_tier.")
        try:
            load_policy(candidate)
        except PolicyError as error:
            raise ConfigError(f"shadow.candidate: {candidate} is not a valid policy: {error}") from None
