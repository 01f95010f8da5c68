"""A child process that scores the proxy's classifier batches, so their Python work never holds the event loop's GIL.

The encoder itself (onnxruntime, tokenizers) releases the GIL, but everything around it (the
first stage's table lookup, the kNN's selection, numpy's small steps, the calibration) needs it,
and under load a classifier thread and the event loop pass the GIL back and forth every switch
interval. Measured on 2 cores, with a busy pure-Python loop standing in for the event loop: a
classifier thread in the same process scored 230 real prompts/s (716 with the loop idle) and slowed
the loop by 22%; in a child process the loop lost 9% and the classifier kept its pace.

The child also does the batching. The event loop writes each text to it as it comes (a pickle on
a private socket pair, a few microseconds); the child, each time it finishes a batch, takes every
text that arrived meanwhile (at most `max_batch`) as the next one. It never waits for the event
loop between batches: when the loop had to hand each batch over itself, the child sat idle a
third of the time at concurrency 32 (2 cores).

The child is started with `python -c CHILD_COMMAND FD` (not multiprocessing's
spawn, which would import the parent's `__main__` again: an application script that starts a
server without a `__main__` guard would start a second one). Its first message is the recipe
(`ScorerRecipe`); it answers "ready" once the scorer is loaded. It exits when the pair closes, so a
parent killed outright leaves no orphan behind.

A child that dies or stops answering hands back every text it held (`on_lost`): the caller
(router/server/scoring.py) scores them in its own copy of the classifier, so no request fails for it.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from classifiers.two_stage import TwoStageClassifier
from core.errors import RouterError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # loading the shipped classifier takes ~2 s; a hub download far longer
ANSWER_TIMEOUT_S = 30.0  # a batch of 32 takes ~0.1 s: a child holding texts this long without a word is hung
_WATCH_S = 1.0  # how often the reader looks at the oldest text in the child
_HEAD = struct.Struct("!I")  # each message: its length, then a pickle
# Not `-m` this module: router.server's package import would load it once before running it again.
CHILD_COMMAND = "from router.server.classifier_process import main; main()"


class Scorer(Protocol):
    """What the proxy needs of a classifier: a score in [0, 1] per text."""

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        """Scores for `texts`."""
        ...


class ScorerLoader(Protocol):
    """Loads a policy's classifier artifact (router.server.scoring.default_classifier_loader)."""

    def __call__(self, path: Path | None, embedding_model: str | None, /) -> Scorer:
        """The classifier at `path` (None: the shipped one), its encoder overridden by `embedding_model`."""
        ...


class ThreadedScorerLoader(ScorerLoader, Protocol):
    """A loader that also takes the encoder's intra-op thread count."""

    def __call__(self, path: Path | None, embedding_model: str | None, /, *, threads: int | None = None) -> Scorer:
        """As ScorerLoader; `threads`: the encoder's intra-op threads (None: the loader's default)."""
        ...


Cuts = tuple[float, ...]


def takes_threads(loader: ScorerLoader) -> bool:
    """Whether `loader` takes the `threads` keyword (an application's own loader need not)."""
    try:
        parameters = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "threads" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


@dataclass(frozen=True)
class ScorerRecipe:
    """How to build a policy's scorer: the classifier, behind its first stage when `disagreement` is set."""

    loader: ScorerLoader
    classifier_path: Path | None
    embedding_model: str | None
    first_stage_path: Path | None
    disagreement: float | None
    threads: int | None = None  # the encoder's intra-op threads, for a loader that takes them; None: its default

    def build(self) -> Scorer:
        """The scorer itself (blocking: loads the models)."""
        if self.threads is None or not takes_threads(self.loader):
            classifier = self.loader(self.classifier_path, self.embedding_model)
        else:
            loader: ThreadedScorerLoader = self.loader  # type: ignore[assignment]
            classifier = loader(self.classifier_path, self.embedding_model, threads=self.threads)
        if self.disagreement is None:
            return classifier
        from classifiers.two_stage import load_first_stage

        return load_first_stage(self.first_stage_path, classifier, disagreement=self.disagreement)

    def portable(self) -> bool:
        """Whether a child process can build it: the loader must be importable by name (not a lambda)."""
        try:
            pickle.dumps(self)
        except (pickle.PicklingError, AttributeError, TypeError):
            return False
        return True


class PendingScore(NamedTuple):
    """A text waiting for a batch; `judged`: the first stage already found it near a cut."""

    text: str
    kind: str
    cuts: Cuts
    judged: bool
    future: asyncio.Future[float]


class Group(NamedTuple):
    """Texts of one batch that one classifier call scores: same score kind, cuts and stage."""

    kind: str
    cuts: Cuts
    judged: bool
    texts: list[str]  # distinct: the same prompt twice is scored once
    members: list[int]  # the positions in the batch of the items it answers


def groups(items: Sequence[tuple[str, str, Cuts, bool]]) -> list[Group]:
    """`items` (text, kind, cuts, judged) grouped by what one classifier call can score together."""
    texts: dict[tuple[str, Cuts, bool], dict[str, None]] = {}  # an ordered set per group
    members: dict[tuple[str, Cuts, bool], list[int]] = {}
    for position, (text, kind, cuts, judged) in enumerate(items):
        texts.setdefault((kind, cuts, judged), {})[text] = None
        members.setdefault((kind, cuts, judged), []).append(position)
    return [Group(*key, list(texts[key]), members[key]) for key in texts]


def predict_batch(scorer: Scorer, texts: list[str], kind: str, cuts: Cuts, judged: bool) -> np.ndarray:
    """Scores of `texts`: both stages of a two-stage scorer at `cuts`, or the second alone for `judged`
    texts (the first stage already found them near a cut); any other scorer scores them exactly."""
    if isinstance(scorer, TwoStageClassifier):
        return scorer.second_stage(texts, kind) if judged else scorer.predict_score(texts, kind, cuts)
    return np.asarray(scorer.predict_score(texts, kind), dtype=float)


def warm(scorer: Scorer) -> None:
    """One prediction of each stage, outside the counts: the first call loads tables and sessions."""
    if isinstance(scorer, TwoStageClassifier):
        scorer.first.predict_score(["warm-up"], "difficulty")
        scorer.second.predict_score(["warm-up"], "difficulty")
    else:
        scorer.predict_score(["warm-up"], "difficulty")


class ClassifierProcessError(RouterError):
    """The child process failed to start, died, or stopped answering."""


def _frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(body)) + body


class ClassifierProcess:
    """One child process scoring batches for one scorer.

    Start-up is blocking (call it off the event loop): the constructor starts the child and hands
    it the recipe, `wait_ready` waits for it to load, so the parent can load its own copy meanwhile.
    Then, on the event loop, `submit` sends a text and returns the future of its score.
    """

    def __init__(self, recipe: ScorerRecipe, *, max_batch: int = 32) -> None:
        self.recipe = recipe
        self.max_batch = max_batch
        ours, theirs = socket.socketpair()
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
            self._child = subprocess.Popen(
                [sys.executable, "-c", CHILD_COMMAND, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid = self._child.pid
        self._socket = ours
        self._held: dict[int, tuple[PendingScore, float]] = {}  # sent, not answered: id -> (text, when sent)
        self._ids = itertools.count()
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._attaching: asyncio.Future[None] | None = None
        self._on_lost: Callable[[list[PendingScore], str], None] = lambda items, why: None
        self._on_batch: Callable[[int, float, int, int], None] = lambda size, seconds, first, second: None
        self.lost: str | None = None  # why the child is gone, once it is
        try:
            ours.sendall(_frame((recipe, max_batch)))
        except OSError as error:
            self.close()
            raise ClassifierProcessError(f"The classifier process (pid {self.pid}) exited at once: {error!r}") from error

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the child has loaded the scorer; raises ClassifierProcessError (and ends it) if it cannot."""
        try:
            ready, _, _ = select.select([self._socket], [], [], timeout_s)
            answer = _read_frame(self._socket) if ready else None
        except OSError as error:
            answer = ("failed", repr(error))
        if answer is None or answer[0] != "ready":
            why = f"did not load the classifier in {timeout_s:.0f} s" if not ready else (
                f"exited ({self._child.poll()})" if answer is None else f"could not load the classifier: {answer[1]}"
            )
            self.close()
            raise ClassifierProcessError(f"The classifier process (pid {self.pid}) {why}.")

    async def attach(
        self, on_lost: Callable[[list[PendingScore], str], None], on_batch: Callable[[int, float, int, int], None]
    ) -> None:
        """Start talking to the child from the running loop (once). `on_lost` gets the texts it held if it
        dies; `on_batch` gets each batch's size, seconds and texts scored by each stage."""
        if self._attaching is None:
            self._on_lost, self._on_batch = on_lost, on_batch
            self._attaching = asyncio.ensure_future(self._open())
        await asyncio.shield(self._attaching)

    async def _open(self) -> None:
        reader, self._writer = await asyncio.open_connection(sock=self._socket)
        self._reading = asyncio.get_running_loop().create_task(self._read(reader), name=f"classifier-process-{self.pid}")

    @property
    def holding(self) -> int:
        """Texts sent to the child and not yet answered."""
        return len(self._held)

    def submit(self, item: PendingScore) -> None:
        """Send one text to the child (call `attach` first); its future gets the score."""
        if self._writer is None or self.lost is not None:
            raise ClassifierProcessError(f"The classifier process (pid {self.pid}) is not attached or is gone.")
        number = next(self._ids)
        self._held[number] = (item, time.monotonic())
        self._writer.write(_frame((number, item.text, item.kind, item.cuts, item.judged)))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        why = "closed"
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(_HEAD.size), _WATCH_S)
                except TimeoutError:
                    oldest = min((sent for _, sent in self._held.values()), default=None)
                    if oldest is not None and time.monotonic() - oldest > ANSWER_TIMEOUT_S:
                        why = f"held a text {ANSWER_TIMEOUT_S:.0f} s without answering; killed"
                        self._child.kill()
                        break
                    continue
                self._answer(pickle.loads(await reader.readexactly(_HEAD.unpack(head)[0])))
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            why = f"exited ({self._child.poll()}): {error!r}"
        finally:  # cancelled (aclose): why stays "closed"
            self._lose(why)

    def _answer(self, answer: tuple[Any, ...]) -> None:
        status, numbers, payload, seconds, first, second = answer
        items = [self._held.pop(number)[0] for number in numbers]
        if status == "error":
            # The classifier itself refused these texts: the same call would fail in the parent too.
            for item in items:
                if not item.future.done():
                    item.future.set_exception(RuntimeError(payload))
            return
        by_text = dict(zip(payload[0], payload[1], strict=True))
        for item in items:
            if not item.future.done():  # not who gave up
                item.future.set_result(float(by_text[item.text]))
        self._on_batch(len(payload[0]), seconds, first, second)

    def _lose(self, why: str) -> None:
        if self.lost is not None:
            return
        self.lost = why
        held = [item for item, _ in self._held.values() if not item.future.done()]
        self._held.clear()
        if self._writer is not None:
            self._writer.close()  # the child exits when it reads the end of the pair
        threading.Thread(target=self._child.wait, name="classifier-process-reaper", daemon=True).start()
        self._on_lost(held, f"The classifier process (pid {self.pid}) {why}.")

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self._child.poll() is None and self.lost is None

    async def aclose(self) -> None:
        """End the child from the loop; texts it still held are handed to `on_lost`."""
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
        await asyncio.to_thread(self.close)

    def close(self, timeout_s: float = 5.0) -> None:
        """End the child (blocking; from any thread): it exits at the end of the pair; one that does not is killed.

        Once attached, the pair belongs to the event loop, so another thread ends the child with
        SIGTERM instead, and the loop's reader, seeing the pair close, hands back what it held.
        """
        if self._writer is None:
            self._socket.close()
        elif self.lost is None:
            self._child.terminate()
        try:
            self._child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


def _read_frame(sock: socket.socket) -> Any:
    """One whole message from a blocking socket; None at end of stream."""
    head = _read_exactly(sock, _HEAD.size)
    if head is None:
        return None
    body = _read_exactly(sock, _HEAD.unpack(head)[0])
    return None if body is None else pickle.loads(body)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _batches(sock: socket.socket, max_batch: int) -> Iterator[list[tuple[int, str, str, Cuts, bool]]]:
    """Batches of texts: wait for one, then take every one already sent, up to `max_batch`."""
    while True:
        first = _read_frame(sock)
        if first is None:
            return
        batch = [first]
        while len(batch) < max_batch and select.select([sock], [], [], 0)[0]:
            more = _read_frame(sock)
            if more is None:
                yield batch
                return
            batch.append(more)
        yield batch


def _serve(sock: socket.socket) -> None:
    """The child's loop: build the scorer, then answer batches until the pair closes."""
    recipe, max_batch = _read_frame(sock)
    try:
        scorer = recipe.build()
        warm(scorer)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which logs it and scores in-process
        sock.sendall(_frame(("failed", f"{type(error).__name__}: {error}")))
        return
    gc.collect()
    gc.freeze()  # the models never change: keep them out of every later collection
    sock.sendall(_frame(("ready", os.getpid())))
    counts = scorer.counts if isinstance(scorer, TwoStageClassifier) else None
    for batch in _batches(sock, max_batch):
        for group in groups([(text, kind, cuts, judged) for _, text, kind, cuts, judged in batch]):
            numbers = [batch[position][0] for position in group.members]
            first_before, second_before = (counts.first, counts.second) if counts else (0, 0)
            started = time.perf_counter()
            try:
                scores = predict_batch(scorer, group.texts, group.kind, group.cuts, group.judged)
            except Exception as error:  # noqa: BLE001 - handed to the parent's waiting requests
                sock.sendall(_frame(("error", numbers, f"{type(error).__name__}: {error}", 0.0, 0, 0)))
                continue
            seconds = time.perf_counter() - started
            first, second = (counts.first - first_before, counts.second - second_before) if counts else (0, 0)
            payload = (group.texts, [float(value) for value in scores])
            sock.sendall(_frame(("ok", numbers, payload, seconds, first, second)))


def main() -> None:
    """Entry point of the child: `python -c CHILD_COMMAND FD`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which closes the pair
    logging.basicConfig(level=logging.WARNING, format="classifier process %(process)d: %(levelname)s %(message)s")
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        _serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone: nothing to answer
    finally:
        sock.close()

