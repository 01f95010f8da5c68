"""`escalation`: answer on a cheap stage; spend more only when its agreement is too low.

For each stage in order: run its strategy. If the confidence is at least `threshold`, or is
None (a single-sample strategy gives no signal), stop there. Otherwise, if `extra_samples`
> 0 and the strategy can extend itself, draw that many more samples on the same backend and
vote again over all of them; if that is still below the threshold, move to the next stage. The
last stage's answer is kept whatever its confidence.

The result carries every call of every stage (each labelled with its stage), `stages` lists
what ran (e.g. ("cheap", "cheap+extra", "strong")), `samples_used` counts all samples drawn
anywhere, and `samples` are the ones the final answer came from.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from core.llm import Backend, GenerationParams, Message
from core.errors import ConfigError
from strategies.base import CallRecord, Extendable, Strategy, StrategyResult


@dataclass(frozen=True, slots=True)
class EscalationConfig:
    """When to escalate: below `threshold` agreement; `extra_samples` first on the same stage."""

    threshold: float = 0.6
    extra_samples: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"escalation.threshold: must be in (0, 1] (got {self.threshold!r}).")
        if isinstance(self.extra_samples, bool) or self.extra_samples < 0:
            raise ConfigError(f"escalation.extra_samples: must be >= 0 (got {self.extra_samples!r}).")


@dataclass(frozen=True, slots=True)
class EscalationStage:
    """One rung: a named tier's backend, its strategy, and its base generation settings."""

    name: str
    backend: Backend
    strategy: Strategy
    params: GenerationParams


class Escalation:
    """Runs stages cheapest first until one is confident enough."""

    name = "escalation"

    def __init__(self, stages: Sequence[EscalationStage], config: EscalationConfig | None = None) -> None:
        self.config = config or EscalationConfig()
        if not stages:
            raise ConfigError("escalation: give at least one stage (tier), cheapest first.")
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"escalation: stage names must be unique (got {names}).")
        if self.config.extra_samples and not isinstance(stages[0].strategy, Extendable):
            raise ConfigError(
                f"escalation.extra_samples: stage {names[0]!r} uses {stages[0].strategy.name}, which cannot draw "
                "more samples; use self_consistency or best_of_n there, or set extra_samples: 0."
            )
        self.stages = tuple(stages)

    async def run(self, messages: Sequence[Message]) -> StrategyResult:
        """Answer `messages`, escalating as the config says."""
        started = time.perf_counter()
        calls: list[CallRecord] = []
        ran: list[str] = []
        samples_used = 0
        result: StrategyResult | None = None
        stop_reason = "last_stage"
        for stage in self.stages:
            result = await stage.strategy.run(stage.backend, messages, stage.params)
            calls += [dataclasses.replace(call, stage=stage.name) for call in result.calls]
            ran.append(stage.name)
            if self._confident(result):
                samples_used += result.samples_used
                stop_reason = "confident"
                break
            if self.config.extra_samples and isinstance(stage.strategy, Extendable):
                before = len(result.calls)
                result = await stage.strategy.extend(
                    stage.backend, messages, stage.params, result, self.config.extra_samples
                )
                extra_label = f"{stage.name}+extra"
                calls += [dataclasses.replace(call, stage=extra_label) for call in result.calls[before:]]
                ran.append(extra_label)
            samples_used += result.samples_used
            if self._confident(result):
                stop_reason = "confident"
                break
        assert result is not None  # stages is non-empty, checked in __init__
        return dataclasses.replace(
            result,
            strategy=self.name,
            samples_used=samples_used,
            calls=tuple(calls),
            latency_s=time.perf_counter() - started,
            stop_reason=stop_reason,
            stages=tuple(ran),
        )

    def _confident(self, result: StrategyResult) -> bool:
        return result.confidence is None or result.confidence >= self.config.threshold
