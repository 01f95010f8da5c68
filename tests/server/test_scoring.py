"""The proxy's scorer: the bounded score cache, and batching that never holds a lone request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from classifiers.two_stage import Calibration, TwoStageClassifier
from router.server.scoring import BatchScorer, ScoreCache, ScorerPool
from tests.conftest import TableScorer


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


async def one_then_more_while_held(
    scorer: BatchScorer, gate: GatedScorer, first: str, later: list[str], cuts: tuple[float, ...] = ()
) -> list[float]:
    """Score `first`; while `gate` holds the worker on it, send `later`; then release: every score, in order."""
    try:
        lone = asyncio.create_task(scorer.score(first, "difficulty", cuts))
        await asyncio.to_thread(gate.entered.wait, 10)  # the first call is running, held
        rest = [asyncio.create_task(scorer.score(text, "difficulty", cuts)) for text in later]
        await asyncio.sleep(0.05)
        gate.release.set()
        return list(await asyncio.gather(lone, *rest))
    finally:
        await scorer.aclose()


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

    scores = asyncio.run(one_then_more_while_held(BatchScorer(classifier, max_batch=8), classifier, "first", ["x", "yy", "x", "zzz"]))
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


def test_cuts_are_part_of_the_cache_key() -> None:
    plain = ScoreCache.key("difficulty", "a")
    assert ScoreCache.key("difficulty", "a", (0.5,)) != plain
    assert ScoreCache.key("difficulty", "a", (0.5,)) != ScoreCache.key("difficulty", "a", (0.4,))


def test_a_two_stage_scorer_is_told_the_cuts_and_a_one_stage_one_is_not() -> None:
    first = TableScorer({"far": 0.02, "near": 0.4})  # on the cut: within any margin
    second = TableScorer({"far": 0.1, "near": 0.6})
    agreeing = np.linspace(0, 1, 101)
    two_stage = TwoStageClassifier(first, second, Calibration({"difficulty": agreeing}, {"difficulty": agreeing}), 0.0)
    one_stage = GatedScorer()
    one_stage.release.set()

    async def run() -> tuple[list[float], float]:
        scorers = BatchScorer(two_stage), BatchScorer(one_stage)
        try:
            both = [await scorers[0].score(text, "difficulty", (0.4,)) for text in ("far", "near", "far")]
            return both, await scorers[1].score("abc", "difficulty", (0.4,))
        finally:
            for scorer in scorers:
                await scorer.aclose()

    scores, plain = asyncio.run(run())
    assert scores == [0.02, 0.6, 0.02]  # far: the first stage alone; near: the transformer; the repeat cached
    assert second.calls == [["near"]] and (two_stage.counts.first, two_stage.counts.second) == (1, 1)
    assert plain == pytest.approx(0.03) and one_stage.calls == [["abc"]]


class ThreadRecordingScorer(TableScorer):
    """A TableScorer that also records which thread each call ran on."""

    def __init__(self, scores: dict[str, float]) -> None:
        super().__init__(scores)
        self.threads: list[str] = []

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        return super().predict_score(texts, score)


def test_while_the_worker_is_busy_the_first_stage_runs_there_not_on_the_event_loop() -> None:
    first = ThreadRecordingScorer({"far": 0.02, "near": 0.4, "near2": 0.4})  # near: on the cut
    second = GatedScorer()  # its first call holds the worker until released
    agreeing = np.linspace(0, 1, 101)
    two_stage = TwoStageClassifier(first, second, Calibration({"difficulty": agreeing}, {"difficulty": agreeing}), 0.0)

    scores = asyncio.run(one_then_more_while_held(BatchScorer(two_stage, max_batch=8), second, "near", ["far", "near2"], (0.4,)))
    # The lone request was judged on the event loop; the two that came while the worker was busy
    # were judged together in the worker's thread, and only the one near the cut reached the transformer.
    assert first.calls == [["near"], ["far", "near2"]]
    assert first.threads[0] == threading.main_thread().name and first.threads[1].startswith("classifier")
    assert second.calls == [["near"], ["near2"]]
    assert scores == pytest.approx([0.04, 0.02, 0.05])
    assert (two_stage.counts.first, two_stage.counts.second) == (1, 2)


def test_a_request_alone_in_the_proxy_is_scored_on_the_event_loop_both_stages() -> None:
    first = ThreadRecordingScorer({"far": 0.02, "near": 0.4, "near2": 0.4})  # near: on the cut
    second = ThreadRecordingScorer({"near": 0.45, "near2": 0.35})
    agreeing = np.linspace(0, 1, 101)
    two_stage = TwoStageClassifier(first, second, Calibration({"difficulty": agreeing}, {"difficulty": agreeing}), 0.0)
    in_flight = [1]

    async def run() -> list[float]:
        scorer = BatchScorer(two_stage, alone=lambda: in_flight[0] <= 1)
        try:
            scores = [await scorer.score("far", "difficulty", (0.4,)), await scorer.score("near", "difficulty", (0.4,))]
            in_flight[0] = 2  # another request in flight: the transformer runs in the worker again
            scores.append(await scorer.score("near2", "difficulty", (0.4,)))
            return scores
        finally:
            await scorer.aclose()

    scores = asyncio.run(run())
    assert scores == pytest.approx([0.02, 0.45, 0.35])
    main = threading.main_thread().name
    assert first.threads == [main, main, main]  # the worker was idle each time: the first stage on the loop
    assert second.threads[0] == main and second.threads[1].startswith("classifier")
    assert (two_stage.counts.first, two_stage.counts.second) == (1, 2)


def test_the_proxy_counts_requests_in_flight_and_says_when_one_is_alone() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from router.server.middleware import InFlightMiddleware, RequestsInFlight

    counter = RequestsInFlight()
    seen: list[tuple[int, bool]] = []

    async def endpoint(request: object) -> PlainTextResponse:
        seen.append((counter.count, counter.alone()))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(InFlightMiddleware, counter=counter)
    with TestClient(app) as client:
        assert client.get("/").text == "ok"
    assert seen == [(1, True)] and counter.count == 0
    counter.count = 2  # the caller and one more
    assert not counter.alone()


def test_pool_puts_the_shipped_first_stage_before_the_policys_classifier() -> None:
    from policies import parse_policy
    from tests.policies.support import TWO_TIERS

    second = TableScorer({})
    policy = parse_policy("classifier:\n  first_stage: {disagreement: 0.01}\n" + TWO_TIERS)
    pool = ScorerPool(lambda path, model: second, max_batch=8, observe=lambda size, seconds: None)

    async def run() -> list[float]:
        try:
            return [await pool.score(policy, text) for text in ("hi", "What is the capital of France?", "2+2")]
        finally:
            await pool.aclose()

    scores = asyncio.run(run())
    counts = pool.stage_counts()
    assert counts.first + counts.second == 3
    assert sum(call == [text] for call in second.calls for text in ("hi", "What is the capital of France?", "2+2")) == counts.second
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert isinstance(pool.load(policy).classifier, TwoStageClassifier)
