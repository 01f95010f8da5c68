"""Difficulty scores for the proxy: a bounded score cache, a lone request on the event loop, batches in a child process.

A prompt scored before (templated traffic, retries) is answered from an LRU cache on the event
loop, in microseconds. A request alone in the proxy (no other HTTP request in flight after one
turn of the loop, in which requests that arrived with it count themselves; no batch in progress)
is scored on the event loop at once, by this process's copy of the classifier with two encoder
threads (both cores are idle then): a hop elsewhere and back added 0.9 ms at the median and 2 ms
at p99 to a lone real prompt (three interleaved runs of 400, 2 cores). A request that arrives
meanwhile waits at most one decision before the loop reads it.

Otherwise the text goes to the classifier's child process (classifier_process), which batches
whatever arrived while it scored the previous batch: the classifier's Python work then never
takes the GIL from the event loop. Measured with `python bench/proxy/interleaved.py` (fresh real
prompts at concurrency 32, 2 cores), the routed proxy served 67-89% of pass-through's requests/s
with the child against 49-74% with a thread. Without a child (`server.classifier_process` off, a
loader a child cannot import, or a child that failed), one worker thread takes the pending texts
in batches: a lone request never waits for a timer or for company.

With `classifier.first_stage` set, the scorer is two-stage (classifiers.two_stage): each request
carries the live policy's cuts. Alone, a request gets both stages on the event loop. With others
in flight and no batch in progress, the static first stage scores it on the event loop (a table
lookup and a dot product, ~0.2 ms), and only a text near a cut goes on to a batch; while a batch
is in progress the request joins the next one unjudged and both stages run there, so that under
load the event loop keeps its core for HTTP. Where the first score is far from every cut that is
the answer; only the rest pay for the transformer. Cached scores are keyed by the cuts too, since
a first-stage score is only good for the cuts it was judged against.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from classifiers.two_stage import StageCounts, TwoStageClassifier
from policies.policy import Policy
from router.server.classifier_process import (
    ClassifierProcess,
    ClassifierProcessError,
    Cuts,
    PendingScore,
    Scorer,
    ScorerLoader,
    ScorerRecipe,
    groups,
    predict_batch,
    warm,
)

logger = logging.getLogger(__name__)

# One intra-op thread for the proxy's encoder: on a 2-core machine the event loop needs the other
# core, and a second onnxruntime thread spinning against it costs more than it gains (bench/proxy).
ENCODER_THREADS = 1
# A request alone in the proxy leaves both cores idle while it is scored: with the batches in the
# child process, the proxy's own encoder (used then only for lone requests) takes two threads.
# Measured on 300 real prompts, one at a time, 2 cores: encode 2.15 / 2.67 ms p50 / p99 on one
# thread, 1.32 / 2.38 ms on two (their workers sleeping between calls, not spinning).
ENCODER_THREADS_ALONE = 2
# How often a thread holding the GIL is made to hand it over (CPython's default: 5 ms). A worker
# thread (no child process) gives the GIL up for each tokenizer and onnxruntime call and must take
# it back from a busy event loop; at 5 ms it waits most of that, at 1 ms the routed proxy served
# 635-645 real prompts/s at concurrency 32 instead of 582-604 (bench/proxy/run.py, two runs each).
GIL_SWITCH_INTERVAL_S = 0.001
# A child that died is replaced at most this often: one that dies at once again (out of memory,
# say) must not be restarted in a loop while the proxy scores in its own thread meanwhile.
PROCESS_RESTART_BACKOFF_S = 10.0
SCORE_CACHE_SIZE = 16_384  # entries of ~150 bytes (digest, kind, float): a few MB at most


ClassifierLoader = ScorerLoader
_CacheKey = tuple[str, Cuts, bytes]
_PoolKey = tuple[Path | None, str | None, Path | None, float | None]


def default_classifier_loader(path: Path | None, embedding_model: str | None, *, threads: int | None = None) -> Scorer:
    """The default loader: the policy's classifier artifact, its encoder on `threads` (default: one) thread."""
    from classifiers.estimator import use_one_blas_thread
    from classifiers.loading import load_classifier

    use_one_blas_thread()  # the proxy's products are one micro-batch each: a second thread only contends
    classifier: Scorer = load_classifier(
        path, embedding_model=embedding_model, threads=threads if threads is not None else ENCODER_THREADS
    )
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
        process: ClassifierProcess | None = None,
        on_process_event: Callable[[str], None] = lambda event: None,
    ) -> None:
        self.classifier = classifier
        # Batches go to `process` (a child scoring with its own copy) while it lives; this process's
        # copy scores lone requests on the event loop, and any batch the child cannot.
        self.process = process
        self._on_process_event = on_process_event
        self._restarting = False
        self._last_restart = 0.0
        self._closed = False
        self._alone = alone  # True when no other request is in flight: then score on the event loop
        # Only a two-stage scorer is told the cuts; any other scores exactly, whatever they are.
        self.two_stage = classifier if isinstance(classifier, TwoStageClassifier) else None
        self.max_batch = max_batch
        self.cache = ScoreCache(cache_size)
        self._observe = observe or (lambda size, seconds: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifier")
        self._pending: list[PendingScore] = []
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._busy = False  # the worker is scoring a batch (read and written on the event loop only)

    def warm(self) -> None:
        """Run one prediction now (blocking): the first call loads the encoder's session."""
        warm(self.classifier)

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
        if self.two_stage is not None and cuts and not self._batching():
            scores, alone = self.two_stage.first_stage([text], kind, cuts)
            if alone[0]:
                self.cache.put(key, float(scores[0]))
                return float(scores[0])
            judged = True
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        item = PendingScore(text, kind, cuts, judged, future)
        process = self.process
        if process is not None and process.lost is None:
            await process.attach(self._process_lost, self._process_batch)
        if process is not None and process.lost is None:
            process.submit(item)
        else:
            self._queue(item)
        value = await future
        self.cache.put(key, value)
        return value

    def _batching(self) -> bool:
        """Texts wait for a batch or are being scored, in the child or the worker thread."""
        process = self.process
        return self._busy or bool(self._pending) or (process is not None and process.holding > 0)

    def _idle_and_alone(self) -> bool:
        """Nothing for the worker to do and no other request in flight: score on the event loop."""
        return not self._batching() and self._alone()

    def _queue(self, item: PendingScore) -> None:
        """Hand `item` to the worker thread's next batch."""
        if self._worker is None or self._worker.done() or self._wake is None:
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._work(self._wake), name="classifier-batches")
        self._pending.append(item)
        self._wake.set()

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

    async def _score_batch(self, loop: asyncio.AbstractEventLoop, batch: list[PendingScore]) -> None:
        for group in groups([(item.text, item.kind, item.cuts, item.judged) for item in batch]):
            members = [batch[position] for position in group.members]
            started = time.perf_counter()
            try:
                scores = await loop.run_in_executor(
                    self._executor, self._predict, group.texts, group.kind, group.cuts, group.judged
                )
            except Exception as error:  # noqa: BLE001 - handed to every waiting request, not swallowed
                for item in members:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            self._observe(len(group.texts), time.perf_counter() - started)
            by_text = dict(zip(group.texts, (float(value) for value in scores), strict=True))
            for item in members:
                if not item.future.done():
                    item.future.set_result(by_text[item.text])

    def _predict(self, texts: list[str], kind: str, cuts: Cuts, judged: bool) -> np.ndarray:
        return predict_batch(self.classifier, texts, kind, cuts, judged)

    def _process_batch(self, size: int, seconds: float, first: int, second: int) -> None:
        """A batch the child scored: its stage counts join this process's."""
        self._observe(size, seconds)
        if self.two_stage is not None:
            self.two_stage.counts.first += first
            self.two_stage.counts.second += second

    def _process_lost(self, held: list[PendingScore], why: str) -> None:
        """The child died or hung: score what it held here, and start another in the background."""
        process = self.process
        if process is not None and process.lost is not None:
            self.process = None
            if not self._closed:
                self._on_process_event("died")
                self._start_replacement(process.recipe, process.max_batch, why)
        for item in held:
            if self._closed:
                item.future.set_exception(ClassifierProcessError(why))
            else:
                self._queue(item)

    def _start_replacement(self, recipe: ScorerRecipe, max_batch: int, why: str) -> None:
        now = time.monotonic()
        wait = max(0.0, self._last_restart + PROCESS_RESTART_BACKOFF_S - now)
        logger.warning("%s Scoring in the proxy's own thread; a new classifier process starts in %.0f s.", why, wait)
        if self._restarting:
            return
        self._restarting = True
        self._last_restart = now + wait
        threading.Thread(
            target=self._restart, args=(recipe, max_batch, wait), name="classifier-restart", daemon=True
        ).start()

    def _restart(self, recipe: ScorerRecipe, max_batch: int, wait: float) -> None:
        try:
            time.sleep(wait)
            if self._closed:
                return
            process = ready_process(spawn_process(recipe, self._on_process_event, max_batch), self._on_process_event)
            if process is not None and self._closed:
                process.close()
            elif process is not None:
                self.process = process
        finally:
            self._restarting = False

    def stop_process(self) -> None:
        """End the child process (blocking); batches are then scored in this process's thread."""
        process, self.process = self.process, None
        if process is not None:
            process.close()

    async def aclose(self) -> None:
        """Stop the worker, its thread and the child process."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        process, self.process = self.process, None
        if process is not None:
            await process.aclose()


def spawn_process(recipe: ScorerRecipe, on_event: Callable[[str], None], max_batch: int) -> ClassifierProcess | None:
    """A child process loading `recipe` (not waited for), or None when it could not start (then logged)."""
    try:
        return ClassifierProcess(recipe, max_batch=max_batch)
    except (ClassifierProcessError, OSError) as error:
        on_event("failed")
        logger.warning("%s Batches are scored in the proxy's own thread.", error)
        return None


def ready_process(child: ClassifierProcess | None, on_event: Callable[[str], None]) -> ClassifierProcess | None:
    """`child` once it has loaded (blocking), or None when it could not (then logged)."""
    if child is None:
        return None
    try:
        child.wait_ready()
    except ClassifierProcessError as error:
        on_event("failed")
        logger.warning("%s Batches are scored in the proxy's own thread.", error)
        return None
    on_event("started")
    return child


class ScorerPool:
    """One BatchScorer per classifier a policy names; a hot reload that names another loads it once.

    With `processes`, each scorer's batches go to a child process of its own (classifier_process),
    when its loader can be named in another process (a lambda cannot: then it scores in a thread).
    Loading a scorer ends the other scorers' children: a hot reload that switched classifiers
    leaves one child, and the old scorer serves any request still holding the old policy itself.
    """

    def __init__(
        self,
        loader: ClassifierLoader,
        *,
        max_batch: int,
        observe: Callable[[int, float], None],
        cache_size: int = SCORE_CACHE_SIZE,
        alone: Callable[[], bool] = lambda: False,
        processes: bool = False,
        threads_alone: int = ENCODER_THREADS_ALONE,
        on_process_event: Callable[[str], None] = lambda event: None,
    ) -> None:
        self._loader = loader
        self._threads_alone = threads_alone
        self._max_batch = max_batch
        self._observe = observe
        self._alone = alone
        self._cache_size = cache_size
        self._processes = processes
        self._on_process_event = on_process_event
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

    def _recipe(self, policy: Policy) -> ScorerRecipe:
        """How to build the policy's classifier, behind its first stage when the policy asks for one."""
        path, embedding_model, first_stage_path, disagreement = self._key(policy)
        return ScorerRecipe(self._loader, path, embedding_model, first_stage_path, disagreement)

    def load(self, policy: Policy) -> BatchScorer:
        """The scorer for `policy`'s classifier, loading and warming it on first use (blocking)."""
        key = self._key(policy)
        with self._lock:
            scorer = self._scorers.get(key)
            if scorer is None:
                started = time.perf_counter()
                recipe = self._recipe(policy)
                portable = self._processes and recipe.portable()
                # The child loads its copy while this process loads its own.
                child = spawn_process(recipe, self._on_process_event, self._max_batch) if portable else None
                # With a child for the batches, this process's copy scores only lone requests.
                alone = replace(recipe, threads=self._threads_alone) if child is not None else recipe
                try:
                    classifier = alone.build()
                except BaseException:
                    if child is not None:
                        child.close()
                    raise
                process = ready_process(child, self._on_process_event)
                if process is None and alone is not recipe:
                    classifier = recipe.build()  # the batches stay here after all: one thread, as the child's
                if self._processes and not portable:
                    logger.info("a child process cannot import the classifier loader: batches are scored in a thread")
                scorer = BatchScorer(
                    classifier, max_batch=self._max_batch, cache_size=self._cache_size, observe=self._observe,
                    alone=self._alone, process=process, on_process_event=self._on_process_event,
                )
                scorer.warm()
                for other in self._scorers.values():
                    other.stop_process()
                self._scorers[key] = scorer
                logger.info(
                    "classifier %s loaded in %.1f s%s", key[0] or "(default)", time.perf_counter() - started,
                    f"; batches scored in process {process.pid}" if process is not None else "",
                )
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
