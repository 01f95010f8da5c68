"""`self_consistency`: sample up to n answers in rounds, majority-vote, stop once the vote is settled.

After each round the vote stops early when either
- the leader cannot be overtaken: its votes exceed the runner-up's plus all samples still to
  be drawn (`decided`), or
- at least `min_samples` are drawn and the leader's agreement is >= `stop_agreement`
  (`agreement`; off when stop_agreement is None).
Otherwise it runs until n samples (`all_samples`). `round_size=None` draws all n in one call:
fixed-n self-consistency, cheapest on backends that batch, with no early stop.
Confidence is the winner's agreement (votes / samples drawn; unreadable samples count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.llm import Backend, GenerationParams, Message
from core.errors import ConfigError
from strategies.base import Recorder, StrategyResult, with_instruction
from strategies.chain_of_thought import STEP_BY_STEP
from strategies.extraction import AnswerType, check_answer_type
from strategies.voting import Vote, majority_vote


def check_sampling(section: str, n: int, temperature: float) -> None:
    """Shared checks for strategies that draw several samples."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{section}.n: must be an integer >= 1 (got {n!r}).")
    if not 0.0 <= temperature <= 2.0:
        raise ConfigError(f"{section}.temperature: must be between 0 and 2 (got {temperature!r}).")
    if n > 1 and temperature == 0:
        raise ConfigError(
            f"{section}.temperature: 0 makes all {n} samples identical; set a temperature such as 0.7, or n: 1."
        )


@dataclass(frozen=True, slots=True)
class SelfConsistencyConfig:
    """Settings of `self_consistency` (field names match router.yaml)."""

    n: int = 5
    temperature: float = 0.7
    answer_type: AnswerType = "text"
    stop_agreement: float | None = None
    round_size: int | None = None
    min_samples: int = 3
    chain_of_thought: bool = False

    def __post_init__(self) -> None:
        check_sampling("self_consistency", self.n, self.temperature)
        check_answer_type(self.answer_type)
        if self.stop_agreement is not None and not 0.0 < self.stop_agreement <= 1.0:
            raise ConfigError(
                f"self_consistency.stop_agreement: must be in (0, 1], or omitted (got {self.stop_agreement!r})."
            )
        if self.round_size is not None and (isinstance(self.round_size, bool) or self.round_size < 1):
            raise ConfigError(
                f"self_consistency.round_size: must be >= 1, or omitted for one round (got {self.round_size!r})."
            )
        if isinstance(self.min_samples, bool) or self.min_samples < 1:
            raise ConfigError(f"self_consistency.min_samples: must be >= 1 (got {self.min_samples!r}).")


def voted_result(
    name: str, recorder: Recorder, vote: Vote, stop_reason: str, extra_latency_s: float = 0.0
) -> StrategyResult:
    """Wrap a vote as a result: the text is the first sample that gave the winning answer."""
    samples = tuple(recorder.samples)
    chosen = next((s for s in samples if vote.answer is not None and s.answer == vote.answer), samples[0])
    return StrategyResult(
        strategy=name,
        text=chosen.text,
        answer=vote.answer,
        confidence=vote.agreement,
        samples_used=len(samples),
        samples=samples,
        calls=tuple(recorder.calls),
        latency_s=recorder.elapsed() + extra_latency_s,
        stop_reason=stop_reason,
    )


class SelfConsistency:
    """Majority vote over sampled answers, drawn in rounds with early stopping."""

    name = "self_consistency"

    def __init__(self, config: SelfConsistencyConfig | None = None) -> None:
        self.config = config or SelfConsistencyConfig()

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """Draw up to n samples and vote."""
        recorder = Recorder(self.config.answer_type)
        return await self._sample(backend, messages, params, recorder, self.config.n, 0.0)

    async def extend(
        self,
        backend: Backend,
        messages: Sequence[Message],
        params: GenerationParams,
        previous: StrategyResult,
        extra: int,
    ) -> StrategyResult:
        """Draw up to `extra` more samples (same rules) and vote over old and new together."""
        recorder = Recorder.continuing(self.config.answer_type, previous)
        target = len(previous.samples) + extra
        return await self._sample(backend, messages, params, recorder, target, previous.latency_s)

    async def _sample(
        self,
        backend: Backend,
        messages: Sequence[Message],
        params: GenerationParams,
        recorder: Recorder,
        target: int,
        earlier_latency_s: float,
    ) -> StrategyResult:
        config = self.config
        prompt = with_instruction(messages, STEP_BY_STEP) if config.chain_of_thought else list(messages)
        sampling = params.replace(temperature=config.temperature)
        round_size = config.round_size or max(1, target - len(recorder.samples))
        vote = majority_vote([s.answer for s in recorder.samples])
        stop_reason = "all_samples"
        while len(recorder.samples) < target:
            want = min(round_size, target - len(recorder.samples))
            await recorder.draw(backend, prompt, sampling.replace(n=want))
            vote = majority_vote([s.answer for s in recorder.samples])
            remaining = target - len(recorder.samples)
            if remaining <= 0:
                break
            if vote.decided(remaining):
                stop_reason = "decided"
                break
            drawn = len(recorder.samples)
            if (
                config.stop_agreement is not None
                and drawn >= min(config.min_samples, target)
                and vote.agreement >= config.stop_agreement
            ):
                stop_reason = "agreement"
                break
        return voted_result(self.name, recorder, vote, stop_reason, earlier_latency_s)

