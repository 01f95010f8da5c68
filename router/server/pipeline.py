"""One chat request, start to end: resolve the model, admit, classify, decide, budget, run, account.

    model ──> router/auto or a rule's model: classify (batched, off the loop) -> decide
          ──> a tier name: that tier (rule "forced")
          ──> allowed by server.passthrough.models: forwarded untouched
          ──> anything else: 404 model_not_found
    then: rate limit -> budget verdict (downgrade / refuse) -> reserve expected cost -> execute
    -> settle the actual cost, metrics, one ledger entry (also for failures).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

from policies.policy import Decision, Policy
from core.names import PASSTHROUGH, ROUTER_MODELS
from router.auth import Principal
from core.errors import LimitExceeded, ModelNotFound
from router.execution import ExecutionResult, LiveStream, passthrough_allowed, spent_calls
from router.ledger.entry import LedgerEntry
from router.ratelimit import Rate
from router.server.errors import describe
from router.server.requests import ChatRequest
from router.server.runtime import Runtime

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Disconnected:
    """Returned instead of a result when the client went away (the work was cancelled)."""


DISCONNECTED = Disconnected()


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T | Disconnected:
    """Await `work`, cancelling it if the client disconnects first (the body must be read already)."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            task.uncancel()
            return DISCONNECTED
        raise
    finally:
        watcher.cancel()


@dataclass(slots=True)
class Plan:
    """What a request will run, decided before any model is called."""

    request_id: str
    chat: ChatRequest
    policy: Policy
    principal: Principal
    decision: Decision | None  # None: pass-through
    started: float
    reserved_usd: float = 0.0
    budgeted: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def tier(self) -> str:
        """The tier the decision picked (the answering one may differ after fallbacks)."""
        return self.decision.tier if self.decision is not None else PASSTHROUGH

    @property
    def strategy(self) -> str:
        """The decided strategy's type."""
        return self.decision.strategy.type if self.decision is not None else "direct"

    @property
    def difficulty(self) -> float | None:
        """The classifier's score, when the request was classified."""
        if self.decision is None or math.isnan(self.decision.difficulty):
            return None
        return self.decision.difficulty

    @property
    def expected_cost_usd(self) -> float:
        """The decision's expected cost (0 for pass-through: no price estimate)."""
        return self.decision.expected_cost_usd if self.decision is not None else 0.0


class ChatPipeline:
    """Plans, runs and accounts chat requests for one Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._rule_models: tuple[Policy | None, frozenset[str]] = (None, frozenset())

    def _models_in_rules(self, policy: Policy) -> frozenset[str]:
        if self._rule_models[0] is not policy:
            names = {m for rule in policy.config.rules if rule.when and rule.when.model for m in rule.when.model}
            self._rule_models = (policy, frozenset(names))
        return self._rule_models[1]

    async def plan(self, request_id: str, chat: ChatRequest, principal: Principal) -> Plan:
        """Resolve the model, admit under the key's limits, classify and decide (no model called yet)."""
        runtime = self.runtime
        policy = runtime.store.policy
        runtime.metrics.set_policy(policy.version)
        server = policy.config.server
        metadata = dict(chat.metadata)
        if principal.name != "anonymous":
            metadata.setdefault("key", principal.name)
        model = chat.model
        route = model in ROUTER_MODELS or model in self._models_in_rules(policy)
        forced = not route and model in policy.tier_names
        if not route and not forced and not passthrough_allowed(model, server.passthrough):
            choices = ", ".join((*ROUTER_MODELS, *policy.tier_names))
            raise ModelNotFound(
                f"The model `{model}` does not exist on this router; use one of: {choices} "
                "(or a model that server.passthrough.models in router.yaml allows)."
            )
        daily = policy.config.budgets.per_key_daily_usd
        per_minute = principal.requests_per_minute or server.rate_limit.requests_per_minute
        rate = Rate(per_minute, server.rate_limit.burst or per_minute) if per_minute else None
        spent = await runtime.limiter.admit(principal.name, rate) if rate or daily else 0.0
        plan = Plan(request_id, chat, policy, principal, None, time.perf_counter(), metadata=metadata)
        if route:
            started = time.perf_counter()
            difficulty = await runtime.scorers.score(policy, chat.query)
            runtime.metrics.classifier_latency.observe(time.perf_counter() - started)
            runtime.metrics.difficulty.observe(difficulty)
            plan.decision = policy.decide(chat.conversation, difficulty, metadata, model)
        elif forced:
            plan.decision = policy.forced(model, chat.conversation)
        if plan.decision is not None:
            verdict = policy.apply_budget(plan.decision, spent)
            if not verdict.allowed:
                raise LimitExceeded(f"Budget: {verdict.reason}.", code="budget_exceeded")
            plan.decision = verdict.decision
        if daily is not None:
            await runtime.limiter.reserve(principal.name, plan.expected_cost_usd, daily)
            plan.reserved_usd, plan.budgeted = plan.expected_cost_usd, True
        return plan

    async def run(self, plan: Plan) -> ExecutionResult:
        """Run the plan to the end (escalation and fallbacks included)."""
        chat, executor = plan.chat, self.runtime.executor
        if plan.decision is None:
            return await executor.run_passthrough(plan.policy, chat.model, chat.messages, chat.options)
        return await executor.run(plan.policy, plan.decision, chat.messages, chat.options)

    async def open_stream(self, plan: Plan) -> LiveStream | ExecutionResult:
        """Start a straight-through stream where the target can stream; else run to the end."""
        chat = plan.chat
        return await self.runtime.executor.open_stream(
            plan.policy, plan.decision, chat.model if plan.decision is None else None, chat.messages, chat.options
        )

    async def finish(
        self, plan: Plan, result: ExecutionResult | None, status: str, http_status: int, *, background: bool = False
    ) -> None:
        """Settle spend, count metrics and record the ledger entry of a finished (or failed) request."""
        runtime, metrics = self.runtime, self.runtime.metrics
        elapsed = time.perf_counter() - plan.started
        tier = result.tier if result is not None else plan.tier
        cost = result.cost_usd if result is not None else 0.0
        metrics.requests.labels(tier, str(http_status)).inc()
        if result is not None:
            metrics.tokens.labels(tier, "input").inc(result.input_tokens)
            metrics.tokens.labels(tier, "output").inc(result.output_tokens)
            metrics.cost.labels(tier).inc(cost)
            metrics.latency.labels(tier).observe(elapsed)
            called = sum(call.latency_s for call in result.calls)
            metrics.overhead.observe(max(0.0, elapsed - called))
        entry = LedgerEntry(
            request_id=plan.request_id,
            timestamp=time.time(),
            policy_version=plan.policy.version,
            tier=tier,
            strategy=result.strategy if result is not None else plan.strategy,
            rule=self._rule(plan),
            difficulty=plan.difficulty,
            models=result.models if result is not None else (),
            input_tokens=result.input_tokens if result is not None else 0,
            output_tokens=result.output_tokens if result is not None else 0,
            cost_usd=cost,
            latency_s=elapsed,
            status=status,
            key_tag=plan.principal.name,
            app=plan.metadata.get("app"),
            prompt=plan.chat.query,
            extra=self._extra(plan, result),
        )
        if background:
            runtime.spawn(self._account(plan, cost, entry))
        else:
            await self._account(plan, cost, entry)

    async def _account(self, plan: Plan, cost: float, entry: LedgerEntry) -> None:
        if plan.budgeted:
            await self.runtime.limiter.settle(plan.principal.name, cost - plan.reserved_usd)
        await self.runtime.ledger.record(entry)

    async def fail(self, plan: Plan | None, error: BaseException, tier_hint: str = "none") -> None:
        """Account a request that ended in an error response."""
        info = describe(error)
        if plan is None:
            self.runtime.metrics.requests.labels(tier_hint, str(info.status)).inc()
            return
        paid = spent_calls(error)  # calls made before the failure still cost money: account them
        partial = ExecutionResult("", "error", plan.tier, plan.strategy, paid) if paid else None
        await self.finish(plan, partial, info.code or "error", info.status)

    @staticmethod
    def _rule(plan: Plan) -> str:
        if plan.decision is None:
            return PASSTHROUGH
        return plan.decision.rule

    @staticmethod
    def _extra(plan: Plan, result: ExecutionResult | None) -> dict[str, object]:
        extra: dict[str, object] = {"requested_model": plan.chat.model}
        if result is not None:
            if result.tier != plan.tier:
                extra["decided_tier"] = plan.tier
            if result.failed:
                extra["failed_tiers"] = list(result.failed)
            if len(result.stages) > 1:
                extra["stages"] = list(result.stages)
            if result.confidence is not None:
                extra["confidence"] = result.confidence
        return extra
