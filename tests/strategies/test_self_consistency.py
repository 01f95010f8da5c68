"""Self-consistency with the shipped FakeBackend: rounds, early stopping, and every token summed."""

from __future__ import annotations

import asyncio

import pytest

from router.backends import FakeBackend, GenerationParams, TokenPrice
from pydantic import ValidationError
from strategies import (
    STEP_BY_STEP,
    Sampling,
    SelfConsistency,
    Strategy,
)

QUESTION = [{"role": "user", "content": "What is 5 + 7?"}]  # 5 words: the fake's input tokens per call
BASE = GenerationParams(max_tokens=32)


def run(strategy: SelfConsistency, backend: FakeBackend, params: GenerationParams = BASE):  # type: ignore[no-untyped-def]
    return asyncio.run(strategy.run(backend, QUESTION, params))


def test_it_is_an_extendable_strategy() -> None:
    strategy = SelfConsistency(n=5)
    assert isinstance(strategy, Sampling) and isinstance(strategy, Strategy)


def test_stops_once_the_leader_cannot_be_overtaken() -> None:
    backend = FakeBackend(["The answer is 12."], price=TokenPrice(1.0, 2.0))
    config = SelfConsistency(chain_of_thought=False, n=9, answer_type="number", round_size=3)
    result = run(config, backend)
    # After 3: 3 votes, 6 to come -> open. After 6: 6 > 0 + 3 -> decided.
    assert (result.answer, result.samples_used, result.stop_reason) == ("12", 6, "decided")
    assert result.confidence == 1.0
    assert [call.params.n for call in backend.calls] == [3, 3]
    assert all(call.params.temperature == 0.7 for call in backend.calls)
    assert [c.n_requested for c in result.calls] == [3, 3]
    assert result.input_tokens == 2 * 5  # the prompt is billed once per call
    assert result.output_tokens == 6 * 4  # "The answer is 12." is 4 words
    assert result.cost_usd == pytest.approx((10 * 1.0 + 24 * 2.0) / 1e6)
    assert result.text == "The answer is 12."


def test_stops_when_agreement_passes_the_level() -> None:
    backend = FakeBackend(["12", "12", "7"])
    config = SelfConsistency(chain_of_thought=False, n=9, answer_type="number", round_size=3, stop_agreement=0.6)
    result = run(config, backend)
    assert (result.answer, result.samples_used, result.stop_reason) == ("12", 3, "agreement")
    assert result.confidence == pytest.approx(2 / 3)
    assert len(result.calls) == 1


def test_agreement_is_not_trusted_before_min_samples() -> None:
    backend = FakeBackend(["5", "6", "5", "5"])
    config = SelfConsistency(chain_of_thought=False, n=9, answer_type="number", round_size=1, stop_agreement=0.5, min_samples=3)
    result = run(config, backend)
    # 1/1 and 1/2 are not looked at; at 3 samples "5" has 2/3 >= 0.5.
    assert (result.samples_used, result.stop_reason, result.answer) == (3, "agreement", "5")
    assert [call.params.n for call in backend.calls] == [1, 1, 1]


def test_without_rounds_it_draws_all_n_in_one_call() -> None:
    backend = FakeBackend(["1", "2", "3"])
    result = run(SelfConsistency(chain_of_thought=False, n=5, answer_type="number"), backend)
    assert len(backend.calls) == 1 and backend.calls[0].params.n == 5
    # 1, 2, 3, 1, 2: "1" and "2" tie at 2 votes; "1" was seen first.
    assert (result.answer, result.confidence, result.samples_used) == ("1", pytest.approx(0.4), 5)
    assert result.stop_reason == "all_samples"


def test_a_split_vote_uses_every_sample() -> None:
    backend = FakeBackend(["1", "2"])
    config = SelfConsistency(chain_of_thought=False, n=6, answer_type="number", round_size=2, stop_agreement=0.9)
    result = run(config, backend)
    assert (result.samples_used, result.stop_reason, len(result.calls)) == (6, "all_samples", 3)
    assert result.input_tokens == 3 * 5 and result.output_tokens == 6


def test_unreadable_samples_lower_the_agreement() -> None:
    backend = FakeBackend(["no idea", "12", "hmm"])
    result = run(SelfConsistency(chain_of_thought=False, n=3, answer_type="number"), backend)
    assert result.answer == "12" and result.confidence == pytest.approx(1 / 3)
    assert result.text == "12"


def test_no_readable_answer_keeps_the_first_text() -> None:
    result = run(SelfConsistency(chain_of_thought=False, n=2, answer_type="number"), FakeBackend(["dunno"]))
    assert (result.answer, result.confidence, result.text) == (None, 0.0, "dunno")


def test_extend_votes_over_old_and_new_samples() -> None:
    backend = FakeBackend(["12", "7", "7", "7"])
    strategy = SelfConsistency(chain_of_thought=False, n=2, answer_type="number")
    first = asyncio.run(strategy.run(backend, QUESTION, BASE))
    assert first.answer == "12" and first.confidence == 0.5
    more = asyncio.run(strategy.extend(backend, QUESTION, BASE, first, 2))
    assert (more.answer, more.samples_used, more.confidence) == ("7", 4, 0.75)
    assert len(more.calls) == 2 and more.input_tokens == 10
    assert more.latency_s >= first.latency_s


def test_chain_of_thought_adds_the_instruction_without_touching_the_input() -> None:
    backend = FakeBackend(["Step 1... Answer: 12"])
    config = SelfConsistency(n=1, answer_type="number", chain_of_thought=True)
    result = run(config, backend)
    sent = backend.calls[0].messages[-1]["content"]
    assert sent.startswith("What is 5 + 7?") and sent.endswith(STEP_BY_STEP)
    assert QUESTION[0]["content"] == "What is 5 + 7?"
    assert result.answer == "12"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 0}, "^1 validation error for SelfConsistency\nn\n"),
        ({"n": 3, "temperature": 3.0}, "\ntemperature\n"),
        ({"n": 3, "temperature": 0.0}, "makes all 3 samples identical"),
        ({"n": 3, "answer_type": "date"}, "\nanswer_type\n"),
        ({"n": 3, "stop_agreement": 0.0}, "\nstop_agreement\n"),
        ({"n": 3, "stop_agreement": 1.5}, "\nstop_agreement\n"),
        ({"n": 3, "round_size": 0}, "\nround_size\n"),
        ({"n": 3, "min_samples": 0}, "\nmin_samples\n"),
    ],
)
def test_config_errors_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SelfConsistency(chain_of_thought=False, **fields)  # type: ignore[arg-type]


def test_a_single_greedy_sample_is_allowed() -> None:
    result = run(SelfConsistency(chain_of_thought=False, n=1, temperature=0.0, answer_type="number"), FakeBackend(["3"]))
    assert (result.answer, result.samples_used, result.confidence) == ("3", 1, 1.0)
