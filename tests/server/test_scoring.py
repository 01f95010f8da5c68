"""The proxy's scorer: the bounded score cache, and batching that never holds a lone request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from router.server.scoring import BatchScorer, ScoreCache


class GatedScorer:
    """A Scorer whose first call blocks until released, recording every call's texts."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = False

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        self.calls.append(list(texts))
        self.entered.set()
        if len(self.calls) == 1:
            assert self.release.wait(10), "the test never released the first call"
        if self.fail:
            raise RuntimeError("encoder broke")
        return np.array([len(text) / 100 for text in texts])


def test_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = ScoreCache(size=2)
    a, b, c = (ScoreCache.key("difficulty", text) for text in ("a", "b", "c"))
    cache.put(a, 0.1)
    cache.put(b, 0.2)
    assert cache.get(a) == 0.1  # a is now the most recent
    cache.put(c, 0.3)
    assert len(cache) == 2 and cache.get(b) is None and cache.get(a) == 0.1 and cache.get(c) == 0.3
    assert ScoreCache.key("gain", "a") != a  # the score kind is part of the key
    assert (cache.hits, cache.misses) == (3, 1)


def test_lone_request_is_scored_at_once_and_a_repeat_comes_from_the_cache() -> None:
    classifier = GatedScorer()
    classifier.release.set()

    async def run() -> tuple[float, float]:
        scorer = BatchScorer(classifier)
        try:
            return await scorer.score("hello", "difficulty"), await scorer.score("hello", "difficulty")
        finally:
            await scorer.aclose()

    first, again = asyncio.run(run())
    assert first == again == pytest.approx(0.05)
    assert classifier.calls == [["hello"]]


def test_requests_arriving_during_a_call_go_together_into_the_next_one() -> None:
    classifier = GatedScorer()

    async def run() -> list[float]:
        scorer = BatchScorer(classifier, max_batch=8)
        try:
            first = asyncio.create_task(scorer.score("first", "difficulty"))
            await asyncio.to_thread(classifier.entered.wait, 10)  # the first call is running, held
            later = [asyncio.create_task(scorer.score(text, "difficulty")) for text in ("x", "yy", "x", "zzz")]
            await asyncio.sleep(0.05)
            classifier.release.set()
            return await asyncio.gather(first, *later)
        finally:
            await scorer.aclose()

    scores = asyncio.run(run())
    assert classifier.calls == [["first"], ["x", "yy", "zzz"]]  # one call for the four, the repeat once
    assert scores == pytest.approx([0.05, 0.01, 0.02, 0.01, 0.03])


def test_a_failed_call_reaches_every_waiting_request_and_is_not_cached() -> None:
    classifier = GatedScorer()
    classifier.fail = True
    classifier.release.set()

    async def run() -> tuple[list[BaseException | float], float]:
        scorer = BatchScorer(classifier)
        try:
            failed = await asyncio.gather(
                scorer.score("a", "difficulty"), scorer.score("b", "difficulty"), return_exceptions=True
            )
            classifier.fail = False
            return list(failed), await scorer.score("a", "difficulty")
        finally:
            await scorer.aclose()

    failed, retried = asyncio.run(run())
    assert all(isinstance(result, RuntimeError) for result in failed)
    assert retried == pytest.approx(0.01) and classifier.calls[-1] == ["a"]
