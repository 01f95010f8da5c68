"""Classifier loaders a child process can import by name (tests/server/test_classifier_process.py).

Each scorer tells where it ran: 0.9 in a child process, 0.1 in the test's own (whose pid the test
puts in ROUTER_TEST_PARENT_PID, which the child inherits).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

IN_CHILD, IN_PARENT = 0.9, 0.1


def in_child() -> bool:
    return str(os.getpid()) != os.environ.get("ROUTER_TEST_PARENT_PID")


class WhereScorer:
    """Scores every text by the process that scored it, after `delay_s` per call."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[list[str]] = []

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        self.calls.append(list(texts))
        if self.delay_s and in_child():
            time.sleep(self.delay_s)
        return np.full(len(texts), IN_CHILD if in_child() else IN_PARENT)


def where_loader(path: Path | None, embedding_model: str | None) -> WhereScorer:
    return WhereScorer()


def slow_where_loader(path: Path | None, embedding_model: str | None) -> WhereScorer:
    return WhereScorer(delay_s=0.3)


def failing_in_child_loader(path: Path | None, embedding_model: str | None) -> WhereScorer:
    if in_child():
        raise RuntimeError("no classifier here")
    return WhereScorer()
