"""Estimates and progress for the long commands (eval, simulate without --scores, classifier train/evaluate).

Progress goes to stderr in the CLI's own voice, so it shows even with third-party logging quiet:
a tqdm bar on a terminal, otherwise a line at every tenth of the work (logs and CI keep it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import typer
from tqdm import tqdm

EMBED_CHUNK = 256  # texts per encoder call: the first one times the machine


def duration(seconds: float) -> str:
    """`42 s`, `3.5 min` or `1.2 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def say(message: str) -> None:
    """One line on stderr from the command itself."""
    typer.echo(message, err=True)


class Progress:
    """Counts finished units of work: a tqdm bar on a terminal, else a line every tenth."""

    def __init__(self, total: int, label: str, unit: str, *, done: int = 0) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.done = done
        self._started = time.monotonic()
        self._since = done
        self._next_line = self._step_after(done)
        self._bar = (
            tqdm(total=total, initial=done, unit=unit, desc=label, file=sys.stderr) if sys.stderr.isatty() else None
        )

    def _step_after(self, done: int) -> int:
        step = max(1, self.total // 10)
        return (done // step + 1) * step

    def update(self, count: int = 1) -> None:
        """`count` more units are finished."""
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        if self.done >= self._next_line or self.done >= self.total:
            elapsed = time.monotonic() - self._started
            rate = (self.done - self._since) / elapsed if elapsed > 0 else 0.0
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            say(
                f"{self.label}: {self.done}/{self.total} {self.unit} in {duration(elapsed)}"
                + (f", about {duration(left)} left" if self.done < self.total else "")
            )
            self._next_line = self._step_after(self.done)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressEncoder:
    """Wraps a text encoder: a large call is cut into chunks, the first one times the machine and
    gives an estimate for the rest, and the chunks show as progress. Everything else is forwarded."""

    def __init__(self, inner: Any, label: str = "embedding") -> None:
        self._inner = inner
        self._label = label
        self.name: str = inner.name  # the TextEncoder protocol's one attribute

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The inner encoder's vectors for `texts`, with an estimate and progress when there are many."""
        if len(texts) <= EMBED_CHUNK:
            return np.asarray(self._inner.encode(texts))
        started = time.monotonic()
        first = np.asarray(self._inner.encode(texts[:EMBED_CHUNK]))
        seconds = time.monotonic() - started
        left = len(texts) - EMBED_CHUNK
        say(
            f"{self._label} {len(texts):,} texts: the first {EMBED_CHUNK} took {duration(seconds)}, so about "
            f"{duration(seconds * left / EMBED_CHUNK)} for the rest (cached texts are quicker; the cache is "
            "$ROUTER_CACHE_DIR, default ~/.cache/difficulty-router)"
        )
        parts = [first]
        with Progress(len(texts), self._label, "texts", done=EMBED_CHUNK) as progress:
            for start in range(EMBED_CHUNK, len(texts), EMBED_CHUNK):
                chunk = texts[start : start + EMBED_CHUNK]
                parts.append(np.asarray(self._inner.encode(chunk)))
                progress.update(len(chunk))
        return np.concatenate(parts)
