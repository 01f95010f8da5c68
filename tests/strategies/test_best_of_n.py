"""best_of_n with the FakeBackend: agreement and log-probability scorers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from router.backends import FakeBackend, FakeReply, GenerationParams
from pydantic import ValidationError
from strategies import BestOfN, Sampling

QUESTION = [{"role": "user", "content": "Capital of France?"}]
BASE = GenerationParams(max_tokens=32)


def test_agreement_picks_the_majority_answer() -> None:
    backend = FakeBackend(["Paris.", "Lyon", "The answer is Paris", "paris!"])
    result = asyncio.run(BestOfN(n=4, answer_type="text").run(backend, QUESTION, BASE))
    assert result.answer == "paris" and result.text == "Paris."
    assert result.confidence == 0.75 and result.samples_used == 4
    assert backend.calls[0].params.n == 4 and not backend.calls[0].params.logprobs


def test_logprob_picks_the_most_likely_sample() -> None:
    backend = FakeBackend(
        [FakeReply("Lyon", mean_logprob=-2.0), FakeReply("Paris", mean_logprob=-0.3), FakeReply("Nice", mean_logprob=-1.0)]
    )
    strategy = BestOfN(n=3, scorer="logprob")
    result = asyncio.run(strategy.run(backend, QUESTION, BASE))
    assert result.text == "Paris" and result.answer == "paris"
    assert result.confidence == pytest.approx(1 / 3)
    assert backend.calls[0].params.logprobs is True


def test_logprob_without_logprobs_falls_back_to_agreement(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(["Lyon", "Paris", "Paris"])
    with caplog.at_level(logging.WARNING):
        result = asyncio.run(BestOfN(n=3, scorer="logprob").run(backend, QUESTION, BASE))
    assert result.answer == "paris" and result.stop_reason == "logprob_unavailable"
    assert "no log-probabilities" in caplog.text


def test_extend_adds_samples_to_the_pick() -> None:
    backend = FakeBackend(["Lyon", "Paris", "Paris", "Paris"])
    strategy = BestOfN(n=2)
    assert isinstance(strategy, Sampling)
    first = asyncio.run(strategy.run(backend, QUESTION, BASE))
    assert first.answer == "lyon"  # 1-1 tie, first seen
    more = asyncio.run(strategy.extend(backend, QUESTION, BASE, first, 2))
    assert (more.answer, more.samples_used, more.confidence, len(more.calls)) == ("paris", 4, 0.75, 2)
    assert more.output_tokens == 4 and more.input_tokens == 2 * 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"n": 0}, "\nn\n"), ({"n": 2, "scorer": "judge"}, "\nscorer\n"), ({"n": 2, "temperature": 0}, "identical")],
)
def test_config_errors_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BestOfN(**fields)  # type: ignore[arg-type]
