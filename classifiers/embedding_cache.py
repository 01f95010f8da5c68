"""On-disk embedding cache keyed by (model name, sha256 of the text), so retraining never re-embeds.

SQLite (stdlib) holds float32 vectors as raw bytes: nothing is unpickled when reading it back.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import EmbeddingError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, text_sha256)
) WITHOUT ROWID
"""
_CHUNK = 500  # SQLite's host-parameter limit is 999 on old builds.


def default_cache_dir() -> Path:
    """`$ROUTER_CACHE_DIR`, else `~/.cache/difficulty-router`."""
    configured = os.environ.get("ROUTER_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "difficulty-router"


def text_digest(text: str) -> bytes:
    """The cache key of one text."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors of texts already embedded by a given model, stored in one SQLite file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_cache_dir() / "embeddings.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise EmbeddingError(
                f"Cannot open the embedding cache at {self.path}: {error}. "
                "Set ROUTER_CACHE_DIR to a writable folder, or pass --no-cache."
            ) from error

    def get_many(self, model: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """The cached vector of each text, or None where it is not cached."""
        digests = [text_digest(text) for text in texts]
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(digests))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT text_sha256, vector FROM embeddings WHERE model = ? AND text_sha256 IN ({marks})",
                (model, *chunk),
            )
            for digest, blob in rows:
                found[bytes(digest)] = np.frombuffer(blob, dtype=np.float32)
        return [found.get(digest) for digest in digests]

    def put_many(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one float32 vector per text."""
        rows = [
            (model, text_digest(text), np.ascontiguousarray(vector, dtype=np.float32).tobytes())
            for text, vector in zip(texts, vectors, strict=True)
        ]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()
