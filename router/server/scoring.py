"""Difficulty scores for the proxy: a bounded score cache, then one worker thread in micro-batches.

A prompt scored before (templated traffic, retries) is answered from an LRU cache on the event
loop, in microseconds. A request alone in the proxy (no other HTTP request in flight after one
turn of the loop, in which requests that arrived with it count themselves; the worker idle) is
scored on the event loop at once: nothing else waits for the loop, and the hop to the
worker thread and back added 0.9 ms at the median and 2 ms at p99 to a lone real prompt (three
interleaved runs of 400, 2 cores). A request that arrives meanwhile waits at most one decision
(about 2 ms) before the loop reads it. Otherwise the request joins the pending list and the
worker takes it at once: a lone request never waits for a timer or for company. Requests that
arrive while a batch is being scored go together into the next one, so under load the classifier
makes one call per batch, and the event loop does not run the encoder. One thread: onnxruntime
releases the GIL, so the encoder uses one core while the event loop keeps the other.

With `classifier.first_stage` set, the scorer is two-stage (classifiers.two_stage): each request
carries the live policy's cuts. Alone, a request gets both stages on the event loop. With others
in flight and the worker idle, the static first stage scores it on the event loop (a table lookup
and a dot product, ~0.2 ms), and only a text near a cut goes to the worker; while the worker is
busy the request joins its next batch unjudged, and the worker runs both stages on it, so that
under load the event loop keeps its core for HTTP (at 32 concurrent real prompts the first stage
was a fifth of the loop's time). Where the first score is far from every cut that is the answer;
only the rest pay for the transformer. Cached scores are keyed by the cuts too, since a
first-stage score is only good for the cuts it was judged against.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from classifiers.two_stage import StageCounts, TwoStageClassifier
from policies.policy import Policy

logger = logging.getLogger(__name__)

# One intra-op thread for the proxy's encoder: on a 2-core machine the event loop needs the other
# core, and a second onnxruntime thread spinning against it costs more than it gains (bench/proxy).
ENCODER_THREADS = 1
# How often a thread holding the GIL is made to hand it over (CPython's default: 5 ms). The worker
# gives the GIL up for each tokenizer and onnxruntime call and must take it back from a busy event
# loop; at 5 ms it waits most of that, at 1 ms the routed proxy served 635-645 real prompts/s at
# concurrency 32 instead of 582-604 (bench/proxy/run.py, two runs each, 2 cores).
GIL_SWITCH_INTERVAL_S = 0.001
SCORE_CACHE_SIZE = 16_384  # entries of ~150 bytes (digest, kind, float): a few MB at most


class Scorer(Protocol):
    """What the proxy needs of a classifier: a score in [0, 1] per text."""

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        """Scores for `texts`."""
        ...


ClassifierLoader = Callable[[Path | None, str | None], Scorer]
Cuts = tuple[float, ...]
_CacheKey = tuple[str, Cuts, bytes]
_PoolKey = tuple[Path | None, str | None, Path | None, float | None]


class _Pending(NamedTuple):
    """A text waiting for the worker; `judged`: the first stage already found it near a cut."""

    text: str
    kind: str
    cuts: Cuts
    judged: bool
    future: asyncio.Future[float]


def default_classifier_loader(path: Path | None, embedding_model: str | None) -> Scorer:
    """The default loader: the policy's classifier artifact, its encoder on one thread."""
    from classifiers.estimator import use_one_blas_thread
    from classifiers.loading import load_classifier

    use_one_blas_thread()  # the proxy's products are one micro-batch each: a second thread only contends
    classifier: Scorer = load_classifier(path, embedding_model=embedding_model, threads=ENCODER_THREADS)
    return classifier


class ScoreCache:
    """The last `size` scores, by (score kind, cuts, SHA-256 of the text); texts themselves are not kept."""

    def __init__(self, size: int = SCORE_CACHE_SIZE) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._scores: OrderedDict[_CacheKey, float] = OrderedDict()

    @staticmethod
    def key(kind: str, text: str, cuts: Cuts = ()) -> _CacheKey:
        """The cache key of one text: a digest bounds memory whatever the prompt's length."""
        return kind, cuts, hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def get(self, key: _CacheKey) -> float | None:
        """The cached score, or None; a hit becomes the most recent entry."""
        value = self._scores.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._scores.move_to_end(key)
        return value

    def put(self, key: _CacheKey, value: float) -> None:
        """Remember a score, forgetting the least recently used beyond `size`."""
        if self.size <= 0:
            return
        self._scores[key] = value
        self._scores.move_to_end(key)
        while len(self._scores) > self.size:
            self._scores.popitem(last=False)

    def __len__(self) -> int:
        return len(self._scores)


class BatchScorer:
    """Scores texts with one classifier: cache first, then batches of concurrent requests in one call.

    The cache is touched only on the event loop's thread, so it needs no lock.
    """

    def __init__(
        self,
        classifier: Scorer,
        *,
        max_batch: int = 32,
        cache_size: int = SCORE_CACHE_SIZE,
        observe: Callable[[int, float], None] | None = None,
        alone: Callable[[], bool] = lambda: False,
    ) -> None:
        self.classifier = classifier
        self._alone = alone  # True when no other request is in flight: then score on the event loop
        # Only a two-stage scorer is told the cuts; any other scores exactly, whatever they are.
        self.two_stage = classifier if isinstance(classifier, TwoStageClassifier) else None
        self.max_batch = max_batch
        self.cache = ScoreCache(cache_size)
        self._observe = observe or (lambda size, seconds: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifier")
        self._pending: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._busy = False  # the worker is scoring a batch (read and written on the event loop only)

    def warm(self) -> None:
        """Run one prediction now (blocking): the first call loads the encoder's session."""
        if self.two_stage is not None:
            # Both stages, outside the counts: the first call of each loads its tables or session.
            self.two_stage.first.predict_score(["warm-up"], "difficulty")
            self.two_stage.second.predict_score(["warm-up"], "difficulty")
        else:
            self.classifier.predict_score(["warm-up"], "difficulty")

    async def score(self, text: str, kind: str, cuts: Cuts = ()) -> float:
        """The score of one text, exact at least near `cuts`: from the cache, else from the next batch."""
        cuts = cuts if self.two_stage is not None else ()
        key = ScoreCache.key(kind, text, cuts)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if self._idle_and_alone():
            # Requests that reached the loop with this one have their tasks created but not yet
            # started, so not yet counted: one turn of the loop lets them count themselves.
            await asyncio.sleep(0)
        if self._idle_and_alone():
            started = time.perf_counter()
            value = float(self._predict([text], kind, cuts, False)[0])
            self._observe(1, time.perf_counter() - started)
            self.cache.put(key, value)
            return value
        judged = False
        if self.two_stage is not None and cuts and not self._busy:
            scores, alone = self.two_stage.first_stage([text], kind, cuts)
            if alone[0]:
                self.cache.put(key, float(scores[0]))
                return float(scores[0])
            judged = True
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._wake is None:
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work(self._wake), name="classifier-batches")
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append(_Pending(text, kind, cuts, judged, future))
        self._wake.set()
        value = await future
        self.cache.put(key, value)
        return value

    def _idle_and_alone(self) -> bool:
        """Nothing for the worker to do and no other request in flight: score on the event loop."""
        return not self._busy and not self._pending and self._alone()

    async def _work(self, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            self._busy = True
            try:
                while self._pending:
                    batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                    await self._score_batch(loop, [item for item in batch if not item.future.done()])  # not who gave up
            finally:
                self._busy = False

    async def _score_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        for kind, cuts, judged in dict.fromkeys((item.kind, item.cuts, item.judged) for item in batch):
            group = [item for item in batch if (item.kind, item.cuts, item.judged) == (kind, cuts, judged)]
            texts = list(dict.fromkeys(item.text for item in group))  # the same prompt twice: score it once
            started = time.perf_counter()
            try:
                scores = await loop.run_in_executor(self._executor, self._predict, texts, kind, cuts, judged)
            except Exception as error:  # noqa: BLE001 - handed to every waiting request, not swallowed
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            self._observe(len(texts), time.perf_counter() - started)
            by_text = dict(zip(texts, (float(value) for value in scores), strict=True))
            for item in group:
                if not item.future.done():
                    item.future.set_result(by_text[item.text])

    def _predict(self, texts: list[str], kind: str, cuts: Cuts, judged: bool) -> np.ndarray:
        if self.two_stage is not None:
            # Judged texts were found near a cut by the first stage already (in `score`); the others
            # get both stages here. With no cuts every score is the transformer's.
            return self.two_stage.second_stage(texts, kind) if judged else self.two_stage.predict_score(texts, kind, cuts)
        return self.classifier.predict_score(texts, kind)

    async def aclose(self) -> None:
        """Stop the worker and its thread."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)


class ScorerPool:
    """One BatchScorer per classifier a policy names; a hot reload that names another loads it once."""

    def __init__(
        self,
        loader: ClassifierLoader,
        *,
        max_batch: int,
        observe: Callable[[int, float], None],
        cache_size: int = SCORE_CACHE_SIZE,
        alone: Callable[[], bool] = lambda: False,
    ) -> None:
        self._loader = loader
        self._max_batch = max_batch
        self._observe = observe
        self._alone = alone
        self._cache_size = cache_size
        self._scorers: dict[_PoolKey, BatchScorer] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(policy: Policy) -> _PoolKey:
        config = policy.config.classifier
        first = config.first_stage
        return (
            policy.classifier_path,
            config.embedding_model,
            policy.first_stage_path,
            first.disagreement if first is not None else None,
        )

    def _build(self, policy: Policy) -> Scorer:
        """The policy's classifier, behind its first stage when the policy asks for one."""
        classifier = self._loader(policy.classifier_path, policy.config.classifier.embedding_model)
        first = policy.config.classifier.first_stage
        if first is None:
            return classifier
        from classifiers.two_stage import load_first_stage

        return load_first_stage(policy.first_stage_path, classifier, disagreement=first.disagreement)

    def load(self, policy: Policy) -> BatchScorer:
        """The scorer for `policy`'s classifier, loading and warming it on first use (blocking)."""
        key = self._key(policy)
        with self._lock:
            scorer = self._scorers.get(key)
            if scorer is None:
                started = time.perf_counter()
                scorer = BatchScorer(
                    self._build(policy), max_batch=self._max_batch, cache_size=self._cache_size, observe=self._observe,
                    alone=self._alone,
                )
                scorer.warm()
                self._scorers[key] = scorer
                logger.info("classifier %s loaded in %.1f s", key[0] or "(default)", time.perf_counter() - started)
            return scorer

    async def score(self, policy: Policy, text: str) -> float:
        """The policy's score of `text`, from its classifier."""
        scorer = self._scorers.get(self._key(policy))
        if scorer is None:
            scorer = await asyncio.to_thread(self.load, policy)
        return await scorer.score(text, policy.config.classifier.score, policy.score_cuts)

    def cache_stats(self) -> tuple[int, int]:
        """Score-cache hits and misses over every classifier."""
        scorers = list(self._scorers.values())
        return sum(s.cache.hits for s in scorers), sum(s.cache.misses for s in scorers)

    def stage_counts(self) -> StageCounts:
        """Texts scored by each stage of the two-stage scorers (none: both zero)."""
        scorers = list(self._scorers.values())  # a copy: a load on another thread may add one meanwhile
        counts = [s.two_stage.counts for s in scorers if s.two_stage is not None]
        return StageCounts(sum(c.first for c in counts), sum(c.second for c in counts))

    async def aclose(self) -> None:
        """Stop every scorer."""
        for scorer in self._scorers.values():
            await scorer.aclose()
