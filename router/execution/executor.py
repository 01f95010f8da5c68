"""Run a routing decision: resolve each attempt to a target, run its strategy, escalate, fall back, account.

    Decision ──> attempt: tier (or pass-through) ──> Target (backend, call settings, strategy)
                     │                                   │ stream asked, one-call strategy,
                     │                                   │ streaming backend: LiveStream
                     │                                   └ else: strategy.run ──(confidence too low)──>
                     │ BackendError                               escalation steps (more samples,
                     └──> the decision's fallbacks, in order      or another tier)

There is one flow for every request: routed, forced and pass-through decisions differ only in the
attempts they list. Every call's tokens and cost are summed into the result, escalation and the
calls of failed attempts included (they were paid for). A stream can fall back only until its
first piece; after that the client has text and an error ends it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.errors import BackendError, BackendUnavailable, ConfigError, InvalidRequest
from core.llm import (
    NOTHING_RELAYED, Backend, Completion, GenerationParams, Message, ReasoningEffort, Relayed, StreamingBackend, TokenPrice,
)
from core.names import PASSTHROUGH
from policies.policy import Decision, Policy
from policies.schema import Capability, EscalationStep, Passthrough, Tier
from router import tracing
from strategies import CallRecord, CallTotals, Direct, Sampling, Strategy, StrategyResult, structured_form

logger = logging.getLogger(__name__)


class BackendProvider(Protocol):
    """Builds (and keeps) the backend behind each tier and each pass-through model."""

    async def for_tier(self, tier: Tier, price: TokenPrice) -> Backend:
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
    """What the client asked for, where the tier allows it (validated at the edge).

    `forwarded` are the client's OpenAI fields the router does not read (tools, response_format,
    seed, user...), sent to every target verbatim; `sent` is everything the client sent apart from
    the fields the proxy owns (model, messages, stream, stream_options), which pass-through
    forwards and nothing else. `needs` are the capabilities the request needs of a tier (images,
    audio, files: `Tier.capabilities`).
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    reasoning_effort: ReasoningEffort | None = None
    n: int = 1  # answers the client wants, each produced by the target's strategy
    forwarded: Mapping[str, Any] = field(default_factory=dict)
    sent: Mapping[str, Any] = field(default_factory=dict)
    needs: frozenset[Capability] = frozenset()
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every upstream call (trace context)

    @property
    def structured(self) -> str | None:
        """The field whose answers are tool calls or JSON (a vote is over their canonical form), or None."""
        return next((name for name in STRUCTURED_FIELDS if name in self.forwarded), None)

    @property
    def single_sample(self) -> str | None:
        """The field whose answer no vote can be taken over (audio output): a multi-call tier answers with one call."""
        return audio_output_field(self.forwarded)

    def capability_param(self, missing: Sequence[Capability]) -> str:
        """The field a refusal for `missing` capabilities names: the audio output field for audio alone, else the messages."""
        return (list(missing) == ["audio"] and audio_output_field(self.forwarded)) or "messages"

    def params(self, *, max_tokens: int, timeout_s: float) -> GenerationParams:
        """The base settings of a call: the client's where given, capped by the target's."""
        return GenerationParams(
            n=1,
            max_tokens=min(self.max_tokens, max_tokens) if self.max_tokens is not None else max_tokens,
            temperature=self.temperature if self.temperature is not None else 0.0,
            top_p=self.top_p if self.top_p is not None else 1.0,
            stop=self.stop,
            reasoning_effort=self.reasoning_effort,
            timeout_s=timeout_s,
            extra=self.forwarded,
            headers=self.headers,
        )

    def passthrough_params(self, *, max_tokens: int, timeout_s: float) -> GenerationParams:
        """Pass-through settings: the client's fields exactly, only a max_tokens above the operator's cap lowered."""
        sent = dict(self.sent)
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(sent.get(key), int) and sent[key] > max_tokens:
                sent[key] = max_tokens
        return dataclasses.replace(
            self.params(max_tokens=max_tokens, timeout_s=timeout_s), reasoning_effort=None, extra=sent, verbatim=True
        )

    def check(self, tier: Tier) -> None:
        """Refuse what `tier` cannot take: a capability it is not declared with, tools on a local model."""
        missing = sorted(self.needs - tier.capabilities)
        if missing:
            param = self.capability_param(missing)
            raise InvalidRequest(
                f"{param}: {needs_message(missing)}, and tier '{tier.name}' does not take that; send it to a tier "
                f"with {declare_message(missing)} in router.yaml, or send text only.",
                param=param, code="unsupported_content",
            )
        structured = self.structured
        if tier.backend == "local" and structured is not None:
            raise InvalidRequest(
                f"{structured}: tier '{tier.name}' is a local model, which this router runs without "
                "tool calling or structured output; send the request to a hosted tier, or leave the field out.",
                param=structured, code="unsupported_parameter",
            )


# Request fields whose answers are tool calls or JSON: a vote counts their canonical form.
STRUCTURED_FIELDS = ("tools", "functions", "response_format")
# What each capability is in a request, and the request field a refusal names.
CAPABILITY_WORDS: Mapping[Capability, str] = {
    "vision": "images (image_url parts)",
    "audio": "audio (input_audio parts or audio output)",
    "files": "files (file parts)",
}


def audio_output_field(fields: Mapping[str, Any]) -> str | None:
    """The field of a request's `fields` that asks for an audio answer (`audio`, or `modalities` with "audio"), or None."""
    if "audio" in fields:
        return "audio"
    return "modalities" if "audio" in (fields.get("modalities") or ()) else None


def needs_message(needs: Sequence[Capability]) -> str:
    """'the request holds images (image_url parts) and audio (...)' for a refusal."""
    return "the request holds " + " and ".join(CAPABILITY_WORDS[need] for need in needs)


def declare_message(needs: Sequence[Capability]) -> str:
    """'`vision: true` and `audio: true`': what router.yaml must say of a tier to take them."""
    return " and ".join(f"`{need}: true`" for need in needs)


@dataclass(frozen=True, slots=True)
class Choice:
    """One answer the client gets."""

    text: str
    finish_reason: str
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    relayed: Relayed = NOTHING_RELAYED


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
    failed: tuple[str, ...] = ()  # attempts that raised before the answering one
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    more: tuple[Choice, ...] = ()  # the client's other answers when it asked for n > 1
    relayed: Relayed = NOTHING_RELAYED

    @property
    def choices(self) -> tuple[Choice, ...]:
        """Every answer, in the order the client gets them."""
        return (Choice(self.text, self.finish_reason, self.tool_calls, self.relayed), *self.more)

    @property
    def models(self) -> tuple[str, ...]:
        """Models called, in first-call order."""
        return tuple(dict.fromkeys(call.model for call in self.calls if call.model))


@dataclass(frozen=True, slots=True)
class Target:
    """One attempt resolved: the tier (or pass-through) name, its backend, call settings and strategy."""

    tier: str
    model: str
    backend: Backend
    strategy: Strategy
    params: GenerationParams
    escalation: tuple[EscalationStep, ...] = ()
    label: str = ""  # the strategy as reported (x-router-strategy): its type, or a fallback's reason

    @property
    def strategy_label(self) -> str:
        """What x-router-strategy says ran."""
        return self.label or self.strategy.type


@dataclass(slots=True)
class LiveStream:
    """A stream already producing: `first` arrived, `rest` yields the others and the final Completion."""

    tier: str
    strategy: str
    model: str
    first: str | Completion
    rest: AsyncIterator[str | Completion]
    failed: tuple[str, ...] = ()
    paid: tuple[CallRecord, ...] = ()  # calls of failed attempts before this one

    def result(self, final: Completion | None, cut: BaseException | None = None) -> ExecutionResult:
        """What the stream cost once it ended: its final Completion, or what the error `cut` says
        was spent before it broke, and the calls of earlier attempts."""
        calls = (*self.paid, *_staged(spent_calls(cut), self.tier))
        if final is not None:
            calls = (*calls, CallRecord.from_completions([final], 1, self.tier))
        text, finish = (final.text, final.finish_reason) if final is not None else ("", "error")
        return ExecutionResult(
            text, finish, self.tier, self.strategy, calls, stages=(self.tier,), failed=self.failed,
            tool_calls=final.tool_calls if final is not None else None,
            relayed=final.relayed if final is not None else NOTHING_RELAYED,
        )

    async def aclose(self) -> None:
        """Close the upstream stream (safe to call twice)."""
        close = getattr(self.rest, "aclose", None)
        if close is not None:
            await close()


def spent_calls(error: BaseException | None) -> tuple[CallRecord, ...]:
    """The calls a failed attempt had already paid for (none for no error)."""
    return tuple(call for call in getattr(error, "spent_calls", ()) if isinstance(call, CallRecord))


def _staged(calls: Sequence[CallRecord], stage: str) -> tuple[CallRecord, ...]:
    return tuple(dataclasses.replace(call, stage=stage) for call in calls)


class Executor:
    """Runs decisions (routed, forced or pass-through) against the backends of a BackendProvider."""

    def __init__(self, backends: BackendProvider, *, on_event: Callable[[str, str, str], None] | None = None) -> None:
        self.backends = backends
        # on_event(kind, from, to): "fallback" or "escalation", for metrics.
        self._on_event = on_event or (lambda kind, source, target: None)

    async def run(
        self, policy: Policy, decision: Decision, messages: Sequence[Message], options: RequestOptions
    ) -> ExecutionResult:
        """Run the decision to its end: its tier (escalating as the policy says), then its fallbacks on failure."""
        result = await self.execute(policy, decision, messages, options, stream=False)
        assert isinstance(result, ExecutionResult)
        return result

    async def execute(
        self,
        policy: Policy,
        decision: Decision,
        messages: Sequence[Message],
        options: RequestOptions,
        *,
        stream: bool,
    ) -> ExecutionResult | LiveStream:
        """Try the decision's attempts in order; with `stream`, a one-call strategy on a streaming backend goes live."""
        attempts = (decision.tier, *decision.fallbacks)
        errors: list[str] = []
        paid: list[CallRecord] = []
        failed: tuple[str, ...] = ()
        for index, name in enumerate(attempts):
            try:
                target = await self._target(policy, name, options, decision.upstream_model)
                live = await self._open(target, messages, options) if stream else None
                result: ExecutionResult | LiveStream = live or await self._run(policy, target, messages, options)
            except asyncio.CancelledError as cancelled:  # the client left: what was paid still counts
                cancelled.spent_calls = (*paid, *_staged(spent_calls(cancelled), name))  # type: ignore[attr-defined]
                raise
            except BackendError as error:
                errors.append(f"{self._label(name)}: {error}")
                paid.extend(spent_calls(error))
                failed = (*failed, name)
                if index + 1 == len(attempts):
                    summary = "; then ".join(errors)
                    final = type(error)(f"every tier tried failed ({summary})" if len(errors) > 1 else str(error))
                    final.spent_calls = tuple(paid)
                    raise final from error
                self._on_event("fallback", name, attempts[index + 1])
                logger.warning("%s failed (%s); falling back to '%s'", self._label(name), error, attempts[index + 1])
                continue
            if isinstance(result, LiveStream):
                result.failed, result.paid = failed, tuple(paid)
            elif failed or paid:
                result = dataclasses.replace(result, failed=failed, calls=(*paid, *result.calls))
            return result
        raise AssertionError("unreachable: a decision always has an attempt")  # pragma: no cover

    @staticmethod
    def _label(name: str) -> str:
        return PASSTHROUGH if name == PASSTHROUGH else f"tier '{name}'"

    async def _target(
        self, policy: Policy, name: str, options: RequestOptions, upstream_model: str | None = None
    ) -> Target:
        if name == PASSTHROUGH:
            config = policy.config.server.passthrough
            model = upstream_model or ""
            try:
                backend = await self.backends.for_passthrough(model, config)
            except ConfigError as error:
                raise BackendUnavailable(f"cannot forward to {model}: {error}") from error
            params = options.passthrough_params(max_tokens=config.max_tokens, timeout_s=config.timeout_s)
            return Target(PASSTHROUGH, model, tracing.traced(backend, PASSTHROUGH, model), Direct(), params)
        tier = policy.tier(name)
        options.check(tier)
        backend = tracing.traced(await self.backends.for_tier(tier, policy.price(name)), name, tier.model)
        params = options.params(max_tokens=tier.max_tokens, timeout_s=tier.timeout_s)
        strategy: Strategy = tier.strategy
        label = ""
        structured = options.structured
        if strategy.one_call((), params) is None:  # a vote or a check over several calls
            unfit = structured is not None and not strategy.handles_structured_answers()
            reason = options.single_sample or (structured if unfit else None)
            if reason is not None:
                # No vote or check means anything over these answers: one direct call answers (docs/proxy.md).
                strategy, label = Direct(), f"direct (fallback: {reason})"
            elif structured is not None:
                label = f"{strategy.type} (votes on {structured_form(params.extra)})"
        return Target(
            name, tier.model, backend, strategy,
            strategy.prepare(params, tier_max_tokens=tier.max_tokens), policy.escalation(name), label,
        )

    async def _open(self, target: Target, messages: Sequence[Message], options: RequestOptions) -> LiveStream | None:
        """Start streaming the target's one call, or None when its strategy or backend cannot stream."""
        call = target.strategy.one_call(messages, target.params)
        if call is None or options.n > 1 or not isinstance(target.backend, StreamingBackend):
            return None
        pieces = aiter(target.backend.stream(call.messages, call.params))
        try:
            first = await anext(pieces)
        except StopAsyncIteration:
            raise BackendUnavailable(f"{self._label(target.tier)} ended its stream without a completion.") from None
        return LiveStream(target.tier, target.strategy_label, target.model, first, pieces)

    async def _run(
        self, policy: Policy, target: Target, messages: Sequence[Message], options: RequestOptions
    ) -> ExecutionResult:
        """Run the target's strategy, then its escalation steps in file order, each whose condition holds."""
        tier, strategy = target.tier, target.strategy
        if options.n > 1:
            return await self._run_n(target, messages, options.n)
        result: StrategyResult = await strategy.run(target.backend, messages, target.params)
        calls = _staged(result.calls, tier)
        stages = [tier]
        spent: list[CallRecord] = []  # calls of a failed escalation: paid for, so accounted
        for step in target.escalation:
            if result.confidence is None or result.confidence >= step.when.agreement_below:
                continue
            more, higher_tier = step.then.more_samples, step.then.to_tier
            if more is not None and isinstance(strategy, Sampling):
                stage = f"{tier}+{more}"
                self._on_event("escalation", tier, f"{tier}+samples")
                drawn = len(result.calls)
                result = await strategy.extend(target.backend, messages, target.params, result, more)
                calls += _staged(result.calls[drawn:], stage)
                stages.append(stage)
            elif higher_tier is not None:
                self._on_event("escalation", tier, higher_tier)
                try:
                    higher = await self._run(
                        policy, await self._target(policy, higher_tier, options), messages, options
                    )
                except BackendError as error:
                    logger.warning(
                        "escalation from '%s' to '%s' failed (%s); keeping the answer of '%s'",
                        tier, higher_tier, error, tier,
                    )
                    spent.extend(_staged(spent_calls(error), higher_tier))
                    break
                return dataclasses.replace(
                    higher, calls=(*spent, *calls, *higher.calls), stages=(*stages, *higher.stages)
                )
        return ExecutionResult(
            text=result.text,
            finish_reason=result.finish_reason,
            tier=tier,
            strategy=target.strategy_label,
            calls=(*spent, *calls),
            confidence=result.confidence,
            stages=tuple(stages),
            tool_calls=result.tool_calls,
            relayed=result.relayed,
        )

    async def _run_n(self, target: Target, messages: Sequence[Message], n: int) -> ExecutionResult:
        """The client's `n` answers, each the target strategy's (no escalation: each stands on its own)."""
        try:
            results = await target.strategy.answers(target.backend, messages, target.params, n)
        except BackendError as error:
            error.spent_calls = _staged(spent_calls(error), target.tier)
            raise
        first = results[0]
        return ExecutionResult(
            text=first.text,
            finish_reason=first.finish_reason,
            tier=target.tier,
            strategy=target.strategy_label,
            calls=_staged([call for result in results for call in result.calls], target.tier),
            confidence=first.confidence,
            stages=(target.tier,),
            tool_calls=first.tool_calls,
            relayed=first.relayed,
            more=tuple(Choice(r.text, r.finish_reason, r.tool_calls, r.relayed) for r in results[1:]),
        )
