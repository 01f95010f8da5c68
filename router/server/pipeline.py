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
import dataclasses
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from starlette.requests import Request

from policies.policy import Decision, Policy
from core.names import ROUTER_MODELS
from router import tracing
from router.auth import Principal
from core.errors import InvalidRequest, LimitExceeded, ModelNotFound
from router.execution import ExecutionResult, LiveStream, RequestOptions, declare_message, needs_message, passthrough_allowed
from router.ledger.entry import LedgerEntry
from router.ratelimit import Rate
from router.server.errors import describe
from router.server.requests import ChatRequest
from router.server.runtime import Runtime
from router.server.sessions import Sessions, SessionRoute

logger = logging.getLogger(__name__)
access_log = logging.getLogger("router.access")  # `router serve --access-log` (router.server.logs)

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's code for "client closed request"; nobody reads it, metrics do


class Disconnected(Exception):
    """Returned instead of a result when the client went away (the work was cancelled).

    An exception type only so that the account reads its `spent_calls` (calls finished before the
    cancel) like any failure's; it is returned, never raised.
    """

    def __init__(self, spent_calls: tuple[object, ...] = ()) -> None:
        super().__init__("the client disconnected")
        self.spent_calls = spent_calls


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
    except asyncio.CancelledError as cancelled:
        if gone:
            task.uncancel()
            return Disconnected(getattr(cancelled, "spent_calls", ()))
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
    session: SessionRoute | None = None  # server.sessions: the conversation and what it did to the decision
    client_request_id: str | None = None  # the client's own x-request-id, recorded beside ours

    @property
    def difficulty(self) -> float | None:
        """The classifier's score, when the request was classified."""
        return self.decision.scored_difficulty


class RequestAccount:
    """Accounts one planned request exactly once: the first `settle` wins, later ones are ignored."""

    __slots__ = ("_pipeline", "plan", "settled", "handed_over")

    def __init__(self, pipeline: ChatPipeline, plan: ChatPlan) -> None:
        self._pipeline = pipeline
        self.plan = plan
        self.settled = False
        self.handed_over = False  # a live stream's relay settles it when the stream ends

    def hand_over(self) -> None:
        """The rest of the request (a live stream) settles this account: leaving the block must not."""
        self.handed_over = True

    async def settle(
        self, outcome: ExecutionResult | BaseException | None, status: str, http_status: int, *, background: bool = False
    ) -> None:
        """Settle spend, count metrics and write the ledger entry (in the background when `background`).

        `outcome` is the answer, or the error it ended with (its paid calls count), or None.
        """
        if self.settled:
            return
        self.settled = True
        work = self._pipeline.account(self.plan, outcome, status, http_status)
        if background:
            self._pipeline.runtime.spawn(work)
        else:
            await work

    async def fail(self, error: BaseException, *, background: bool = False) -> None:
        """Account a request that ended in an error response."""
        info = describe(error)
        await self.settle(error, info.code or "error", info.status, background=background)

    async def __aenter__(self) -> RequestAccount:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if self.settled or (self.handed_over and error is None):
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
        self.sessions = Sessions(runtime)
        self._rule_models: tuple[Policy | None, frozenset[str]] = (None, frozenset())

    def _models_in_rules(self, policy: Policy) -> frozenset[str]:
        if self._rule_models[0] is not policy:
            names = {m for rule in policy.config.rules if rule.when and rule.when.model for m in rule.when.model}
            self._rule_models = (policy, frozenset(names))
        return self._rule_models[1]

    async def plan(
        self, request_id: str, chat: ChatRequest, principal: Principal, policy: Policy, headers: Mapping[str, str] | None = None
    ) -> ChatPlan:
        """Resolve the model, admit under the key's limits, classify and decide (no model called yet)."""
        runtime = self.runtime
        runtime.metrics.set_policy(policy.version)
        server = policy.config.server
        metadata = dict(chat.metadata)
        # Identity comes from authentication only: a client cannot borrow another key's rules.
        metadata.pop("key", None)
        if principal.name != "anonymous":
            metadata["key"] = principal.name
        metadata.update(principal.tags)  # a key's tags (app, team) are its identity too
        model = chat.model
        route = model in ROUTER_MODELS or model in self._models_in_rules(policy)
        forced = not route and model in policy.tier_names
        if not route and not forced and not passthrough_allowed(model, server.passthrough):
            choices = ", ".join((*ROUTER_MODELS, *policy.tier_names))
            raise ModelNotFound(
                f"The model `{model}` does not exist on this router; use one of: {choices} "
                "(or a model that server.passthrough.models in router.yaml allows)."
            )
        daily = principal.daily_budget_usd  # the key's own budget, else router.yaml's per-key one
        if daily is None:
            daily = policy.config.budgets.per_key_daily_usd
        if principal.tokens_per_minute:
            await runtime.limiter.admit_tokens(principal.name, principal.tokens_per_minute)
        per_minute = principal.requests_per_minute or server.rate_limit.requests_per_minute
        rate = Rate(per_minute, server.rate_limit.burst or per_minute) if per_minute else None
        spent = await runtime.limiter.admit(principal.name, rate) if rate or daily else 0.0
        started = time.perf_counter()
        conversation = chat.conversation  # all message text, joined: once per request
        session: SessionRoute | None = None
        if route:
            with tracing.span("router.classify", {"router.batch_max": runtime.settings.classifier_batch}):
                difficulty = await runtime.scorers.score(policy, chat.query)
            runtime.metrics.classifier_latency.observe(time.perf_counter() - started)
            runtime.metrics.difficulty.observe(difficulty)
            with tracing.span("router.decide", {"router.difficulty": difficulty}):
                decision = policy.decide(conversation, difficulty, metadata, model)
            session = await self.sessions.route(policy, decision, headers or {}, principal.name, chat.messages, conversation)
            decision = session.decision if session is not None else decision
            if chat.options.needs:
                decision = _with_capabilities(policy, decision, chat.options)
        elif forced:
            decision = policy.forced(model, conversation)
        else:
            decision = policy.passthrough(model, conversation)
        if chat.options.n > 1:  # n answers cost n times one
            decision = dataclasses.replace(decision, expected_cost_usd=decision.expected_cost_usd * chat.options.n)
        verdict = policy.apply_budget(decision, spent)
        if not verdict.allowed:
            raise LimitExceeded(f"Budget: {verdict.reason}.", code="budget_exceeded")
        plan = ChatPlan(request_id, chat, policy, principal, verdict.decision, started, metadata=metadata, session=session)
        if daily is not None:
            # The worst case, not the expected cost: concurrent requests then cannot overshoot the budget
            # by more than the prompt-token estimate's error (docs/proxy.md, "Budgets under concurrency").
            worst = policy.worst_case_cost(plan.decision, chat.options.max_tokens) * chat.options.n
            await runtime.limiter.reserve(principal.name, worst, daily)
            plan.reserved_usd, plan.budgeted = worst, True
        return plan

    async def execute(self, plan: ChatPlan, *, stream: bool) -> ExecutionResult | LiveStream:
        """Run the plan: to the end, or (with `stream`) live where the target can stream."""
        chat = plan.chat
        with tracing.span("router.execute", {"router.tier": plan.decision.tier, "router.stream": stream}):
            result = await self.runtime.executor.execute(
                plan.policy, plan.decision, chat.messages, chat.options, stream=stream
            )
        if isinstance(result, LiveStream):  # its first piece is in hand: what the client sees first
            self.runtime.metrics.first_token.labels(result.tier).observe(time.perf_counter() - plan.started)
        return result

    async def account(
        self, plan: ChatPlan, outcome: ExecutionResult | BaseException | None, status: str, http_status: int
    ) -> None:
        """Settle spend, count metrics, record the ledger entry and offer the answer to the live loop."""
        runtime, metrics = self.runtime, self.runtime.metrics
        elapsed = time.perf_counter() - plan.started
        entry = LedgerEntry.from_execution(
            plan.request_id, plan.decision, outcome, status=status, latency_s=elapsed,
            key_tag=plan.principal.name, app=plan.metadata.get("app"), prompt=plan.chat.query,
            extra={
                "requested_model": plan.chat.model,
                **(plan.session.ledger_fields() if plan.session else {}),
                **({"client_request_id": plan.client_request_id} if plan.client_request_id else {}),
            },
        )
        tier = entry.tier
        metrics.requests.labels(tier, str(http_status)).inc()
        metrics.tokens.labels(tier, "input").inc(entry.input_tokens)  # a failure's paid calls count too
        metrics.tokens.labels(tier, "output").inc(entry.output_tokens)
        metrics.cost.labels(tier).inc(entry.cost_usd)
        metrics.app_cost.labels(tier, metrics.apps.label(entry.app)).inc(entry.cost_usd)
        metrics.request_cost.labels(tier).observe(entry.cost_usd)
        if isinstance(outcome, ExecutionResult):
            metrics.latency.labels(tier).observe(elapsed)
            called = sum(call.latency_s for call in outcome.calls)
            metrics.overhead.observe(max(0.0, elapsed - called))
        if access_log.isEnabledFor(logging.INFO):
            calls = outcome.calls if isinstance(outcome, ExecutionResult) else ()
            access_log.info("chat request", extra={"fields": {
                "request_id": entry.request_id, "key": entry.key_tag, "app": entry.app,
                "model": plan.chat.model, "tier": tier, "rule": entry.rule, "strategy": entry.strategy,
                "samples": sum(call.n_returned for call in calls), "calls": len(calls),
                "difficulty": entry.difficulty, "input_tokens": entry.input_tokens,
                "output_tokens": entry.output_tokens, "cost_usd": entry.cost_usd,
                "latency_s": round(elapsed, 4), "status": status, "http_status": http_status,
            }})
        if plan.principal.tokens_per_minute:
            await runtime.limiter.count_tokens(plan.principal.name, entry.input_tokens + entry.output_tokens)
        if plan.budgeted:
            await runtime.limiter.settle(plan.principal.name, entry.cost_usd - plan.reserved_usd)
        tracing.annotate({
            "router.tier": tier, "router.rule": entry.rule, "router.strategy": entry.strategy,
            "router.key": entry.key_tag, "router.cost_usd": entry.cost_usd, "router.status": status,
        })
        with tracing.span("router.ledger.record"):
            await runtime.ledger.record(entry)
        if isinstance(outcome, ExecutionResult) and status == "ok":
            await runtime.live.after_request(entry, plan.chat.messages, outcome.text, metadata=plan.metadata)


def _with_capabilities(policy: Policy, decision: Decision, options: RequestOptions) -> Decision:
    """A routed request with images, audio or files goes to a tier that takes them; with none configured, a 400 says so."""
    moved = policy.with_capabilities(decision, options.needs)
    if moved is None:
        needs = sorted(options.needs)
        param = options.capability_param(needs)
        raise InvalidRequest(
            f"{param}: {needs_message(needs)}, and no tier of this router takes that; add {declare_message(needs)} "
            "to a tier in router.yaml whose model reads it, or send text only.",
            param=param, code="unsupported_content",
        )
    return moved
