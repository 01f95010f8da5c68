"""Run a routing decision: pick each tier's backend, run its strategy, escalate, fall back, account.

    Decision ──> tier's backend + strategy ──> result ──(agreement too low)──> escalation steps
                      │ BackendError                                          (more samples, or
                      └──> the decision's fallbacks, in order                  another tier)

Every call's tokens and cost are summed into the result, escalation included. Calls made by an
attempt that then failed are not (a failing strategy raises before it can report them).
Single-sample strategies on a backend that can stream (`StreamingBackend`) can be streamed
straight through with `open_stream`; everything else runs to the end first.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from policies.policy import Decision, Policy
from policies.pricing import TokenPrice as PolicyPrice
from policies.schema import BestOfN as BestOfNSchema
from policies.schema import ChainOfThought as ChainOfThoughtSchema
from policies.schema import Passthrough, StrategyConfig, Tier
from policies.schema import Reasoning as ReasoningSchema
from policies.schema import SelfConsistency as SelfConsistencySchema
from core.llm import Backend, Completion, GenerationParams, Message
from core.names import PASSTHROUGH as PASSTHROUGH
from core.errors import BackendError, BackendUnavailable, ConfigError
from strategies import (
    STEP_BY_STEP,
    BestOfN,
    BestOfNConfig,
    CallRecord,
    CallTotals,
    ChainOfThought,
    Direct,
    Extendable,
    Reasoning,
    ReasoningConfig,
    SelfConsistency,
    SelfConsistencyConfig,
    Strategy,
    StrategyResult,
    with_instruction,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


@runtime_checkable
class StreamingBackend(Backend, Protocol):
    """A backend that can also stream one completion: text deltas, then the whole Completion."""

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str | Completion]:
        """Yield text pieces as they come, then exactly one Completion with usage and cost."""
        ...


class BackendProvider(Protocol):
    """Builds (and keeps) the backend behind each tier and each pass-through model."""

    async def for_tier(self, tier: Tier, price: PolicyPrice) -> Backend:
        """The backend serving `tier`."""
        ...

    async def for_passthrough(self, model: str, config: Passthrough) -> Backend:
        """The backend forwarding to `model`."""
        ...

    def preload(self, policy: Policy) -> None:
        """Build every tier's backend now (blocking: local models load here)."""
        ...

    async def aclose(self) -> None:
        """Release connections and workers."""
        ...


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """What the client asked for, where the tier allows it (validated at the edge)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecutionResult(CallTotals):
    """The final answer and everything spent on it."""

    text: str
    finish_reason: str
    tier: str
    strategy: str
    calls: tuple[CallRecord, ...]
    confidence: float | None = None
    stages: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # tiers that raised before the answering one

    @property
    def models(self) -> tuple[str, ...]:
        """Models called, in first-call order."""
        return tuple(dict.fromkeys(call.model for call in self.calls if call.model))


@dataclass(slots=True)
class LiveStream:
    """A stream already producing: `first` arrived, `rest` yields the others and the final Completion."""

    tier: str
    strategy: str
    model: str
    first: str | Completion
    rest: AsyncIterator[str | Completion]
    failed: tuple[str, ...] = ()


@functools.lru_cache(maxsize=256)
def build_strategy(config: StrategyConfig) -> Strategy:
    """The strategy object for a router.yaml strategy section (stateless, so shared)."""
    if isinstance(config, SelfConsistencySchema):
        return SelfConsistency(
            SelfConsistencyConfig(
                n=config.n,
                temperature=config.temperature,
                answer_type=config.answer_type,
                stop_agreement=config.stop_agreement,
                round_size=config.round_size,
                chain_of_thought=config.chain_of_thought,
            )
        )
    if isinstance(config, BestOfNSchema):
        return BestOfN(
            BestOfNConfig(
                n=config.n,
                scorer=config.scorer,
                temperature=config.temperature,
                chain_of_thought=config.chain_of_thought,
            )
        )
    if isinstance(config, ReasoningSchema):
        return Reasoning(
            ReasoningConfig(effort=config.effort, thinking_budget_tokens=config.thinking_budget_tokens)
        )
    if isinstance(config, ChainOfThoughtSchema):
        return ChainOfThought()
    return Direct()


def generation_params(tier: Tier | None, options: RequestOptions, *, max_tokens: int, timeout_s: float) -> GenerationParams:
    """The base settings of a call: the client's where given, capped by the tier's."""
    wanted = min(options.max_tokens, max_tokens) if options.max_tokens is not None else max_tokens
    if tier is not None and isinstance(tier.strategy, ReasoningSchema):
        budget = tier.strategy.thinking_budget_tokens
        if budget is not None and wanted <= budget:
            wanted = max_tokens  # a thinking budget needs room for an answer after it
    return GenerationParams(
        n=1,
        max_tokens=wanted,
        temperature=options.temperature if options.temperature is not None else 0.0,
        top_p=options.top_p if options.top_p is not None else 1.0,
        stop=options.stop,
        timeout_s=timeout_s,
    )


def single_call(
    config: StrategyConfig, messages: Sequence[Message], params: GenerationParams
) -> tuple[Sequence[Message], GenerationParams] | None:
    """The one call a single-sample strategy makes (so it can be streamed), or None for sampling ones."""
    if isinstance(config, SelfConsistencySchema | BestOfNSchema):
        return None
    if isinstance(config, ChainOfThoughtSchema):
        return with_instruction(messages, STEP_BY_STEP), params
    if isinstance(config, ReasoningSchema):
        return messages, params.replace(
            reasoning_effort=config.effort, thinking_budget_tokens=config.thinking_budget_tokens
        )
    return messages, params


def _chosen_finish(result: StrategyResult) -> str:
    for sample in result.samples:
        if sample.text == result.text:
            return sample.finish_reason
    return "stop"


def spent_calls(error: BaseException) -> tuple[CallRecord, ...]:
    """The calls a failed attempt had already paid for."""
    return tuple(call for call in getattr(error, "spent_calls", ()) if isinstance(call, CallRecord))


class Executor:
    """Runs decisions and pass-through requests against the backends of a BackendProvider."""

    def __init__(self, backends: BackendProvider, *, on_event: Callable[[str, str, str], None] | None = None) -> None:
        self.backends = backends
        # on_event(kind, from, to): "fallback" or "escalation", for metrics.
        self._on_event = on_event or (lambda kind, source, target: None)

    async def run(
        self, policy: Policy, decision: Decision, messages: Sequence[Message], options: RequestOptions
    ) -> ExecutionResult:
        """Run the decision's tier (escalating as the policy says), then its fallbacks on failure."""

        async def attempt(tier: str, strategy: StrategyConfig) -> ExecutionResult:
            return await self._run_tier(policy, tier, strategy, messages, options)

        return await self._with_fallbacks(policy, decision.tier, decision.strategy, decision.fallbacks, attempt)

    async def run_passthrough(
        self, policy: Policy, model: str, messages: Sequence[Message], options: RequestOptions
    ) -> ExecutionResult:
        """Forward to `model` untouched (direct strategy); on failure, the pass-through fallback tiers."""
        config = policy.config.server.passthrough
        try:
            return await self._run_passthrough(model, config, messages, options)
        except BackendError as error:
            if not config.fallbacks:
                raise
            return await self._passthrough_fallbacks(policy, model, messages, options, error)

    async def _passthrough_fallbacks(
        self, policy: Policy, model: str, messages: Sequence[Message], options: RequestOptions, error: BackendError
    ) -> ExecutionResult:
        fallbacks = policy.config.server.passthrough.fallbacks
        self._on_event("fallback", PASSTHROUGH, fallbacks[0])
        logger.warning("pass-through to %s failed (%s); trying fallbacks %s", model, error, fallbacks)

        async def attempt(tier: str, strategy: StrategyConfig) -> ExecutionResult:
            return await self._run_tier(policy, tier, strategy, messages, options)

        return await self._with_fallbacks(
            policy, fallbacks[0], policy.tier(fallbacks[0]).strategy, tuple(fallbacks[1:]), attempt,
            failed=(PASSTHROUGH,), earlier=error,
        )

    async def open_stream(
        self, policy: Policy, decision: Decision | None, model: str | None,
        messages: Sequence[Message], options: RequestOptions,
    ) -> LiveStream | ExecutionResult:
        """Start streaming if the target can stream (fallbacks apply until the first piece); else run it."""
        if decision is None:
            assert model is not None
            config = policy.config.server.passthrough
            backend = await self._passthrough_backend(model, config)
            params = generation_params(None, options, max_tokens=config.max_tokens, timeout_s=config.timeout_s)
            if not isinstance(backend, StreamingBackend):
                return await self.run_passthrough(policy, model, messages, options)
            try:
                return await self._start(backend, messages, params, PASSTHROUGH, "direct", model)
            except BackendError as error:
                if not config.fallbacks:
                    raise
                return await self._passthrough_fallbacks(policy, model, messages, options, error)

        async def attempt(tier: str, strategy: StrategyConfig) -> LiveStream | ExecutionResult:
            tier_config = policy.tier(tier)
            params = generation_params(tier_config, options, max_tokens=tier_config.max_tokens, timeout_s=tier_config.timeout_s)
            call = single_call(strategy, messages, params)
            if call is not None:
                backend = await self.backends.for_tier(tier_config, policy.price(tier))
                if isinstance(backend, StreamingBackend):
                    return await self._start(backend, call[0], call[1], tier, strategy.type, tier_config.model)
            return await self._run_tier(policy, tier, strategy, messages, options)

        return await self._with_fallbacks(policy, decision.tier, decision.strategy, decision.fallbacks, attempt)

    async def _start(
        self, backend: StreamingBackend, messages: Sequence[Message], params: GenerationParams,
        tier: str, strategy: str, model: str,
    ) -> LiveStream:
        pieces = aiter(backend.stream(messages, params))
        try:
            first = await anext(pieces)
        except StopAsyncIteration:
            raise BackendUnavailable(f"tier '{tier}' ended its stream without a completion.") from None
        return LiveStream(tier, strategy, model, first, pieces)

    async def _with_fallbacks(
        self,
        policy: Policy,
        tier: str,
        strategy: StrategyConfig,
        fallbacks: Sequence[str],
        attempt: Callable[[str, StrategyConfig], Awaitable[T]],
        *,
        failed: tuple[str, ...] = (),
        earlier: BackendError | None = None,
    ) -> T:
        plan = [(tier, strategy), *((name, policy.tier(name).strategy) for name in fallbacks)]
        errors: list[str] = [f"{PASSTHROUGH}: {earlier}"] if earlier is not None else []
        paid: list[CallRecord] = list(spent_calls(earlier)) if earlier is not None else []
        for index, (name, config) in enumerate(plan):
            try:
                result = await attempt(name, config)
            except BackendError as error:
                errors.append(f"tier '{name}': {error}")
                paid.extend(spent_calls(error))
                failed = (*failed, name)
                if index + 1 == len(plan):
                    summary = "; then ".join(errors)
                    final = type(error)(f"every tier tried failed ({summary})" if len(errors) > 1 else str(error))
                    final.spent_calls = tuple(paid)
                    raise final from error
                self._on_event("fallback", name, plan[index + 1][0])
                logger.warning("tier '%s' failed (%s); falling back to '%s'", name, error, plan[index + 1][0])
                continue
            if isinstance(result, ExecutionResult) and (failed or paid):
                result = dataclasses.replace(result, failed=failed, calls=(*paid, *result.calls))
            elif isinstance(result, LiveStream) and failed:
                result = dataclasses.replace(result, failed=failed)
            return result
        raise AssertionError("unreachable: the plan is never empty")  # pragma: no cover

    async def _run_tier(
        self, policy: Policy, tier: str, strategy_config: StrategyConfig,
        messages: Sequence[Message], options: RequestOptions,
    ) -> ExecutionResult:
        """Run one tier and then its escalation steps, in file order, each whose condition holds."""
        config = policy.tier(tier)
        backend = await self.backends.for_tier(config, policy.price(tier))
        strategy = build_strategy(strategy_config)
        params = generation_params(config, options, max_tokens=config.max_tokens, timeout_s=config.timeout_s)
        result = await strategy.run(backend, messages, params)
        spent: list[CallRecord] = []  # calls of a failed escalation: paid for, so accounted
        stages = [tier]
        for step in (s for s in policy.config.escalation if s.from_tier == tier):
            if result.confidence is None or result.confidence >= step.when.agreement_below:
                continue
            if step.then.more_samples is not None and isinstance(strategy, Extendable):
                self._on_event("escalation", tier, f"{tier}+samples")
                result = await strategy.extend(backend, messages, params, result, step.then.more_samples)
                stages.append(f"{tier}+{step.then.more_samples}")
            elif step.then.to_tier is not None:
                self._on_event("escalation", tier, step.then.to_tier)
                try:
                    higher = await self._run_tier(
                        policy, step.then.to_tier, policy.tier(step.then.to_tier).strategy, messages, options
                    )
                except BackendError as error:
                    logger.warning(
                        "escalation from '%s' to '%s' failed (%s); keeping the answer of '%s'",
                        tier, step.then.to_tier, error, tier,
                    )
                    spent.extend(spent_calls(error))
                    break
                return dataclasses.replace(
                    higher, calls=(*spent, *result.calls, *higher.calls), stages=(*stages, *higher.stages)
                )
        return ExecutionResult(
            text=result.text,
            finish_reason=_chosen_finish(result),
            tier=tier,
            strategy=strategy_config.type,
            calls=(*spent, *result.calls),
            confidence=result.confidence,
            stages=tuple(stages),
        )

    async def _passthrough_backend(self, model: str, config: Passthrough) -> Backend:
        try:
            return await self.backends.for_passthrough(model, config)
        except ConfigError as error:
            raise BackendUnavailable(f"cannot forward to {model}: {error}") from error

    async def _run_passthrough(
        self, model: str, config: Passthrough, messages: Sequence[Message], options: RequestOptions
    ) -> ExecutionResult:
        backend = await self._passthrough_backend(model, config)
        params = generation_params(None, options, max_tokens=config.max_tokens, timeout_s=config.timeout_s)
        result = await Direct().run(backend, messages, params)
        return ExecutionResult(
            text=result.text,
            finish_reason=_chosen_finish(result),
            tier=PASSTHROUGH,
            strategy="direct",
            calls=result.calls,
            stages=(PASSTHROUGH,),
        )
