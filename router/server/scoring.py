"""Difficulty scores for the proxy: the embedding runs in one worker thread, in micro-batches.

Requests that arrive while a batch is being embedded wait and go together into the next one, so
under load the classifier makes one call per batch instead of one per request, and the event
loop never runs torch. One thread, because torch already spreads one call over the cores.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from policies.policy import Policy

logger = logging.getLogger(__name__)


class Scorer(Protocol):
    """What the proxy needs of a classifier: a score in [0, 1] per text."""

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        """Scores for `texts`."""
        ...


ClassifierLoader = Callable[[Path | None, str | None], Scorer]
_Pending = tuple[str, str, "asyncio.Future[float]"]


def load_policy_classifier(path: Path | None, embedding_model: str | None) -> Scorer:
    """The default loader: the policy's classifier artifact with its embedding model."""
    from classifiers import load_classifier

    classifier: Scorer = load_classifier(path, embedding_model=embedding_model)
    return classifier


class BatchScorer:
    """Scores texts with one classifier, batching concurrent requests into one call."""

    def __init__(self, classifier: Scorer, *, max_batch: int = 32, observe: Callable[[int, float], None] | None = None) -> None:
        self.classifier = classifier
        self.max_batch = max_batch
        self._observe = observe or (lambda size, seconds: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifier")
        self._pending: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    def warm(self) -> None:
        """Run one prediction now (blocking): the first torch call is slow."""
        self.classifier.predict_score(["warm-up"], "difficulty")

    async def score(self, text: str, kind: str) -> float:
        """The score of one text; waits for the next batch."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._wake is None:
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work(self._wake), name="classifier-batches")
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((text, kind, future))
        self._wake.set()
        return await future

    async def _work(self, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                batch = [item for item in batch if not item[2].done()]  # callers that gave up
                for kind in dict.fromkeys(item[1] for item in batch):
                    group = [item for item in batch if item[1] == kind]
                    started = time.perf_counter()
                    try:
                        scores = await loop.run_in_executor(
                            self._executor, self.classifier.predict_score, [item[0] for item in group], kind
                        )
                    except Exception as error:  # noqa: BLE001 - handed to every waiting request, not swallowed
                        for _, _, future in group:
                            if not future.done():
                                future.set_exception(error)
                        continue
                    self._observe(len(group), time.perf_counter() - started)
                    for (_, _, future), value in zip(group, scores, strict=True):
                        if not future.done():
                            future.set_result(float(value))

    async def aclose(self) -> None:
        """Stop the worker and its thread."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)


class ScorerPool:
    """One BatchScorer per classifier a policy names; a hot reload that names another loads it once."""

    def __init__(self, loader: ClassifierLoader, *, max_batch: int, observe: Callable[[int, float], None]) -> None:
        self._loader = loader
        self._max_batch = max_batch
        self._observe = observe
        self._scorers: dict[tuple[Path | None, str | None], BatchScorer] = {}
        self._lock = threading.Lock()

    def load(self, policy: Policy) -> BatchScorer:
        """The scorer for `policy`'s classifier, loading and warming it on first use (blocking)."""
        key = (policy.classifier_path, policy.config.classifier.embedding_model)
        with self._lock:
            scorer = self._scorers.get(key)
            if scorer is None:
                started = time.perf_counter()
                scorer = BatchScorer(self._loader(*key), max_batch=self._max_batch, observe=self._observe)
                scorer.warm()
                self._scorers[key] = scorer
                logger.info("classifier %s loaded in %.1f s", key[0] or "(default)", time.perf_counter() - started)
            return scorer

    async def score(self, policy: Policy, text: str) -> float:
        """The policy's score of `text`, from its classifier."""
        key = (policy.classifier_path, policy.config.classifier.embedding_model)
        scorer = self._scorers.get(key)
        if scorer is None:
            scorer = await asyncio.to_thread(self.load, policy)
        return await scorer.score(text, policy.config.classifier.score)

    async def aclose(self) -> None:
        """Stop every scorer."""
        for scorer in self._scorers.values():
            await scorer.aclose()
