"""One chat request, start to end: resolve the model, admit, classify, decide, budget, run, account.

    model ──> router/auto or a rule's model: classify (batched, off the loop) -> decide
          ──> a tier name: that tier (rule "forced")
          ──> allowed by server.passthrough.models: forwarded untouched (a pass-through decision)
          ──> anything else: 404 model_not_found
    then: rate limit -> budget verdict (downgrade / refuse) -> reserve expected cost -> execute
    -> `RequestAccount`: settle the actual cost, metrics, one ledger entry, exactly once however
       the request ends (answer, error, client gone, stream cut).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
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
CLIENT_CLOSED = 499  # nginx's code for "client closed request"; nobody reads it, metrics do


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
class ChatPlan:
    """What a request will run, decided before any model is called."""

    request_id: str
    chat: ChatRequest
    policy: Policy
    principal: Principal
    decision: Decision
    started: float
    reserved_usd: float = 0.0
    budgeted: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def difficulty(self) -> float | None:
        """The classifier's score, when the request was classified."""
        return None if math.isnan(self.decision.difficulty) else self.decision.difficulty


class RequestAccount:
    """Accounts one planned request exactly once: the first `settle` wins, later ones are ignored."""

    __slots__ = ("_pipeline", "plan", "settled")

    def __init__(self, pipeline: ChatPipeline, plan: ChatPlan) -> None:
        self._pipeline = pipeline
        self.plan = plan
        self.settled = False

    async def settle(
        self, result: ExecutionResult | None, status: str, http_status: int, *, background: bool = False
    ) -> None:
        """Settle spend, count metrics and write the ledger entry (in the background when `background`)."""
        if self.settled:
            return
        self.settled = True
        work = self._pipeline.account(self.plan, result, status, http_status)
        if background:
            self._pipeline.runtime.spawn(work)
        else:
            await work

    async def fail(self, error: BaseException, *, background: bool = False) -> None:
        """Account a request that ended in an error; calls paid for before it still count."""
        info = describe(error)
        paid = spent_calls(error)
        decision = self.plan.decision
        partial = ExecutionResult("", "error", decision.tier, decision.strategy.type, paid) if paid else None
        await self.settle(partial, info.code or "error", info.status, background=background)

    async def __aenter__(self) -> RequestAccount:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if self.settled:
            return
        # Shielded: after a disconnect the scope is cancelled, and the entry must still be written.
        with anyio.CancelScope(shield=True):
            if error is None or isinstance(error, asyncio.CancelledError):
                await self.settle(None, "client_disconnected", CLIENT_CLOSED)
            else:
                await self.fail(error)


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

    async def plan(self, request_id: str, chat: ChatRequest, principal: Principal, policy: Policy) -> ChatPlan:
        """Resolve the model, admit under the key's limits, classify and decide (no model called yet)."""
        runtime = self.runtime
        runtime.metrics.set_policy(policy.version)
        server = policy.config.server
        metadata = dict(chat.metadata)
        # Identity comes from authentication only: a client cannot borrow another key's rules.
        metadata.pop("key", None)
        if principal.name != "anonymous":
            metadata["key"] = principal.name
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
        started = time.perf_counter()
        if route:
            difficulty = await runtime.scorers.score(policy, chat.query)
            runtime.metrics.classifier_latency.observe(time.perf_counter() - started)
            runtime.metrics.difficulty.observe(difficulty)
            decision = policy.decide(chat.conversation, difficulty, metadata, model)
        elif forced:
            decision = policy.forced(model, chat.conversation)
        else:
            decision = policy.passthrough(model, chat.conversation)
        verdict = policy.apply_budget(decision, spent)
        if not verdict.allowed:
            raise LimitExceeded(f"Budget: {verdict.reason}.", code="budget_exceeded")
        plan = ChatPlan(request_id, chat, policy, principal, verdict.decision, started, metadata=metadata)
        if daily is not None:
            # The worst case, not the expected cost: concurrent requests then cannot overshoot the budget
            # by more than the prompt-token estimate's error (docs/proxy.md, "Budgets under concurrency").
            worst = policy.worst_case_cost(plan.decision, chat.options.max_tokens)
            await runtime.limiter.reserve(principal.name, worst, daily)
            plan.reserved_usd, plan.budgeted = worst, True
        return plan

    async def execute(self, plan: ChatPlan, *, stream: bool) -> ExecutionResult | LiveStream:
        """Run the plan: to the end, or (with `stream`) live where the target can stream."""
        chat = plan.chat
        return await self.runtime.executor.execute(plan.policy, plan.decision, chat.messages, chat.options, stream=stream)

    async def account(
        self, plan: ChatPlan, result: ExecutionResult | None, status: str, http_status: int
    ) -> None:
        """Settle spend, count metrics and record the ledger entry of a finished (or failed) request."""
        runtime, metrics = self.runtime, self.runtime.metrics
        elapsed = time.perf_counter() - plan.started
        decision = plan.decision
        tier = result.tier if result is not None else decision.tier
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
            strategy=result.strategy if result is not None else decision.strategy.type,
            rule=decision.rule,
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
        if plan.budgeted:
            await runtime.limiter.settle(plan.principal.name, cost - plan.reserved_usd)
        await runtime.ledger.record(entry)

    @staticmethod
    def _extra(plan: ChatPlan, result: ExecutionResult | None) -> dict[str, object]:
        extra: dict[str, object] = {"requested_model": plan.chat.model}
        if result is not None:
            if result.tier != plan.decision.tier:
                extra["decided_tier"] = plan.decision.tier
            if result.failed:
                extra["failed_tiers"] = list(result.failed)
            if len(result.stages) > 1:
                extra["stages"] = list(result.stages)
            if result.confidence is not None:
                extra["confidence"] = result.confidence
        return extra
