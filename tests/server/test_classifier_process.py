"""The classifier's child process: batches scored there, lone requests here, nothing lost when it dies or hangs."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from policies.loader import load_policy
from policies.policy import Policy
from router.server import classifier_process, scoring
from router.server.classifier_process import ClassifierProcess, ScorerRecipe
from router.server.scoring import BatchScorer, ScorerPool, default_classifier_loader
from tests.server.process_loaders import (
    IN_CHILD,
    IN_PARENT,
    failing_in_child_loader,
    slow_where_loader,
    where_loader,
)

REPO_POLICY = Path(__file__).resolve().parents[2] / "router.yaml"


@pytest.fixture(autouse=True)
def _parent_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_TEST_PARENT_PID", str(os.getpid()))


@pytest.fixture
def one_stage(tmp_path: Path) -> Policy:
    """The shipped policy without its first stage: the test loaders' scores reach the caller unchanged."""
    text = REPO_POLICY.read_text()
    assert "first_stage: {disagreement: 0.005}" in text
    (tmp_path / "router.yaml").write_text(text.replace("first_stage: {disagreement: 0.005}", "first_stage: null"))
    return load_policy(tmp_path / "router.yaml")


@asynccontextmanager
async def loaded(
    loader: Callable[..., object], policy: Policy, events: list[str], *, alone: bool = False,
    threads_alone: int = scoring.ENCODER_THREADS_ALONE,
) -> AsyncIterator[tuple[ScorerPool, BatchScorer]]:
    """A pool with child processes, `policy`'s scorer loaded in it (off the loop, as the proxy does); closed after."""
    scorers = ScorerPool(
        loader,  # type: ignore[arg-type]
        max_batch=32, observe=lambda size, seconds: None, alone=lambda: alone, processes=True,
        threads_alone=threads_alone, on_process_event=events.append,
    )
    try:
        yield scorers, await asyncio.to_thread(scorers.load, policy)
    finally:
        await scorers.aclose()


async def wait_until(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_batches_go_to_the_child_and_a_lone_request_is_scored_here(one_stage: Policy) -> None:
    async def run() -> None:
        events: list[str] = []
        async with loaded(where_loader, one_stage, events) as (busy, scorer):
            assert events == ["started"] and scorer.process is not None and scorer.process.alive()
            scores = await asyncio.gather(*(busy.score(one_stage, f"question {i}") for i in range(40)))
            assert scores == [IN_CHILD] * 40
        async with loaded(where_loader, one_stage, [], alone=True) as (quiet, _):
            assert await quiet.score(one_stage, "alone") == IN_PARENT  # no hop for a request alone in the proxy

    asyncio.run(run())


def test_a_killed_child_loses_no_request_and_is_replaced(monkeypatch: pytest.MonkeyPatch, one_stage: Policy) -> None:
    monkeypatch.setattr(scoring, "PROCESS_RESTART_BACKOFF_S", 0.0)

    async def run() -> None:
        events: list[str] = []
        async with loaded(slow_where_loader, one_stage, events) as (scorers, scorer):
            assert scorer.process is not None
            first = scorer.process
            waiting = [asyncio.create_task(scorers.score(one_stage, f"held {i}")) for i in range(5)]
            await wait_until(lambda: first.holding == 5)
            os.kill(first.pid, signal.SIGKILL)
            scores = await asyncio.wait_for(asyncio.gather(*waiting), 10)
            assert scores == [IN_PARENT] * 5  # every text the child held was scored here instead
            assert "died" in events
            await wait_until(lambda: scorer.process is not None and scorer.process is not first)
            assert events == ["started", "died", "started"]
            after = await asyncio.gather(*(scorers.score(one_stage, f"later {i}") for i in range(3)))
            assert after == [IN_CHILD] * 3

    asyncio.run(run())


def test_a_hung_child_is_killed_and_its_texts_scored_here(monkeypatch: pytest.MonkeyPatch, one_stage: Policy) -> None:
    monkeypatch.setattr(classifier_process, "ANSWER_TIMEOUT_S", 0.5)
    monkeypatch.setattr(classifier_process, "_WATCH_S", 0.1)
    monkeypatch.setattr(scoring, "PROCESS_RESTART_BACKOFF_S", 3600.0)

    async def run() -> None:
        events: list[str] = []
        async with loaded(where_loader, one_stage, events) as (scorers, scorer):
            assert scorer.process is not None
            hung = scorer.process
            os.kill(hung.pid, signal.SIGSTOP)
            started = time.monotonic()
            scores = await asyncio.wait_for(asyncio.gather(*(scorers.score(one_stage, f"q {i}") for i in range(3))), 10)
            assert scores == [IN_PARENT] * 3 and time.monotonic() - started < 5
            assert events == ["started", "died"] and scorer.process is None
            await asyncio.to_thread(hung._child.wait, 5)  # killed, not left stopped

    asyncio.run(run())


def test_a_child_that_cannot_load_leaves_the_batches_in_a_thread(one_stage: Policy) -> None:
    async def run() -> None:
        events: list[str] = []
        async with loaded(failing_in_child_loader, one_stage, events) as (scorers, scorer):
            assert events == ["failed"] and scorer.process is None
            assert await asyncio.gather(*(scorers.score(one_stage, f"q {i}") for i in range(4))) == [IN_PARENT] * 4

    asyncio.run(run())


def test_a_loader_a_child_cannot_import_scores_in_a_thread(one_stage: Policy) -> None:
    async def run() -> None:
        events: list[str] = []
        async with loaded(lambda path, model: where_loader(path, model), one_stage, events) as (scorers, scorer):
            assert events == [] and scorer.process is None
            assert await scorers.score(one_stage, "q") == IN_PARENT

    asyncio.run(run())


def test_closing_the_pair_ends_the_child_by_itself() -> None:
    process = ClassifierProcess(ScorerRecipe(where_loader, None, None, None, None))
    process.wait_ready()
    assert process.alive()
    process.close()
    assert process._child.returncode == 0  # it read the end of the pair and returned, no kill needed


def test_the_shipped_two_stage_classifier_scores_the_same_in_the_child() -> None:
    """The real classifier and first stage: the child's scores and stage counts are this process's."""
    pytest.importorskip("onnxruntime")

    async def run() -> None:
        events: list[str] = []
        policy = load_policy(REPO_POLICY)
        assert policy.config.classifier.first_stage is not None
        texts = [f"What is {i} times {i + 7}?" for i in range(20)] + ["Prove that there are infinitely many primes."]
        async with loaded(default_classifier_loader, policy, events, threads_alone=2) as (scorers, scorer):
            assert events == ["started"] and scorer.two_stage is not None
            assert scorer.two_stage.second.encoder.threads == 2  # type: ignore[attr-defined]  # here: lone requests only
            scores = await asyncio.gather(*(scorers.score(policy, text) for text in texts))
            counts = scorers.stage_counts()
            assert counts.first + counts.second == len(texts)
            local = scorer.two_stage.predict_score(texts, policy.config.classifier.score, policy.score_cuts)
            assert scores == pytest.approx(list(local), abs=1e-5)

    asyncio.run(run())


def test_a_batch_scorer_without_a_process_scores_in_its_thread() -> None:
    scorer = BatchScorer(where_loader(None, None))

    async def run() -> list[float]:
        try:
            return list(await asyncio.gather(*(scorer.score(f"q {i}", "difficulty") for i in range(3))))
        finally:
            await scorer.aclose()

    assert asyncio.run(run()) == [IN_PARENT] * 3


def test_stopping_the_child_from_another_thread_hands_back_what_it_held(one_stage: Policy) -> None:
    """A hot reload ends the old scorer's child from a loader thread: its texts are scored here, none hang."""

    async def run() -> None:
        async with loaded(slow_where_loader, one_stage, []) as (scorers, scorer):
            child = scorer.process
            assert child is not None
            waiting = [asyncio.create_task(scorers.score(one_stage, f"held {i}")) for i in range(3)]
            await wait_until(lambda: child.holding == 3)
            await asyncio.to_thread(scorer.stop_process)
            assert await asyncio.wait_for(asyncio.gather(*waiting), 10) == [IN_PARENT] * 3
            assert scorer.process is None and child._child.returncode is not None

    asyncio.run(run())
