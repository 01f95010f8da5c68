"""Hot reload: keep the last valid policy live while the file is edited under a running proxy.

The live policy is one attribute that a reload rebinds. A request reads `store.policy` once and
keeps that reference, so a swap never changes the policy of a request already in flight, and no
lock is needed on the read path.

The watcher loads an edit only once the file has settled: the same size, mtime and content hash
over `server.reload.settle_s` (default 1 s), so a file still being written in place never goes
live half-written. The hash matters as well as mtime and size, which alone miss a same-size edit
made within the file system's timestamp granularity. A writer that pauses longer than the settle
time can still expose a prefix that parses; against the worst case of that, an edit that drops
every API key source (`server.api_keys`, `server.redis_api_keys`) is refused unless the new file
says `server.reload.allow_auth_downgrade: true`. Deploy edits by writing a temporary file and
renaming it over the old one (docs/policy.md): then no reader ever sees half a file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import PolicyError
from policies.loader import content_version, parse_policy
from policies.policy import Policy
from policies.schema import ServerConfig

logger = logging.getLogger(__name__)

# Outcomes of an edit the store has read, counted in `stats()` (and shown in /metrics).
RELOAD_OUTCOMES = ("applied", "invalid", "auth_downgrade_refused")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The file as one poll saw it."""

    size: int
    mtime_ns: int
    content: bytes
    version: str


@dataclass(frozen=True, slots=True)
class _Pending:
    """An edit seen but not yet settled: the snapshot and when it was first seen unchanged."""

    snapshot: _Snapshot
    since: float


def auth_downgrade(old: ServerConfig, new: ServerConfig) -> str | None:
    """What `new` drops of `old`'s API key sources, in words; None when it drops none.

    Removing or adding single keys is ordinary key management. Dropping a whole source is what a
    truncated file looks like, and without any source the proxy stops asking for keys at all.
    """
    dropped = []
    if old.api_keys and not new.api_keys:
        dropped.append(f"every server.api_keys entry ({len(old.api_keys)})")
    if old.redis_api_keys and not new.redis_api_keys:
        dropped.append("server.redis_api_keys")
    return " and ".join(dropped) or None


class PolicyStore:
    """The live policy of one file, swapped atomically by `reload` or by the polling watcher."""

    def __init__(self, path: str | Path, *, interval_s: float = 0.5, settle_s: float | None = None) -> None:
        """`settle_s` overrides the policy's `server.reload.settle_s` (the watcher's wait for a still file)."""
        self._path = Path(path)
        self._interval_s = interval_s
        self._settle_s = settle_s
        self._lock = threading.Lock()  # serialises reloads; readers never take it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: _Pending | None = None
        self._stats = dict.fromkeys(RELOAD_OUTCOMES, 0)
        content = self._read()
        if content is None:
            raise PolicyError(
                f"{self._path}: no such policy file; pass the right path or create it."
            )
        # An invalid file at start-up is fatal: there is no last good policy to fall back on.
        self._policy = parse_policy(content, source=str(self._path))
        self._seen: str | None = self._policy.version  # content hash of the last file considered

    @property
    def policy(self) -> Policy:
        """The live policy; read it once per request and keep the reference."""
        return self._policy

    @property
    def path(self) -> Path:
        """The watched file."""
        return self._path

    @property
    def settle_s(self) -> float:
        """How long the watcher waits for the file to stop changing before it loads an edit."""
        return self._settle_s if self._settle_s is not None else self._policy.config.server.reload.settle_s

    def stats(self) -> dict[str, int]:
        """How many edits were applied, rejected as invalid, or refused as auth downgrades."""
        return dict(self._stats)

    def reload(self) -> bool:
        """Read the file now and swap it in if it validates. True when the live policy changed.

        No settling: this is for an operator who knows the file is complete (e.g. on SIGHUP).
        An unconfirmed auth downgrade is refused here too.
        """
        with self._lock:
            snapshot = self._snapshot()
            return snapshot is not None and self._consider(snapshot)

    def poll(self) -> bool:
        """One watcher step: load an edit once the file is unchanged for `settle_s`. True on a swap."""
        with self._lock:
            snapshot = self._snapshot()
            if snapshot is None or snapshot.version == self._seen:
                self._pending = None
                return False
            now = time.monotonic()
            pending = self._pending
            if pending is None or pending.snapshot != snapshot:
                self._pending = _Pending(snapshot, now)
                if self.settle_s > 0:
                    return False
            elif now - pending.since < self.settle_s:
                return False
            self._pending = None
            return self._consider(snapshot)

    def _consider(self, snapshot: _Snapshot) -> bool:
        """Validate an edit and swap it in unless it is invalid or an unconfirmed auth downgrade."""
        version = snapshot.version
        if version == self._seen:
            return False
        self._seen = version
        if version == self._policy.version:
            return False  # back to the live file after a rejected edit
        try:
            new = parse_policy(snapshot.content, source=str(self._path))
        except PolicyError as error:
            self._stats["invalid"] += 1
            logger.error(
                "%s: edit rejected (version %s), keeping policy %s:\n%s",
                self._path, version, self._policy.version, error,
            )
            return False
        old = self._policy
        dropped = auth_downgrade(old.config.server, new.config.server)
        if dropped is not None:
            if not new.config.server.reload.allow_auth_downgrade:
                self._stats["auth_downgrade_refused"] += 1
                logger.error(
                    "%s: edit refused (version %s), keeping policy %s: it drops %s, which would weaken "
                    "authentication (a file still being written looks like this too). If that is "
                    "intended, put `server: {reload: {allow_auth_downgrade: true}}` in the new file.",
                    self._path, version, old.version, dropped,
                )
                return False
            logger.warning(
                "%s: policy %s drops %s, as allowed by server.reload.allow_auth_downgrade; remove that "
                "flag once deployed.", self._path, version, dropped,
            )
        self._policy = new
        self._stats["applied"] += 1
        logger.info("%s: policy %s replaced by %s", self._path, old.version, new.version)
        return True

    def start(self) -> None:
        """Start the watcher thread: every `interval_s` seconds it polls the file (see `poll`)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._watch, name=f"policy-watch:{self._path}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher thread and wait for it."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def __enter__(self) -> PolicyStore:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.poll()
            except OSError as error:  # a transient file-system hiccup must not kill the watcher
                logger.warning("%s: cannot be read (%s); will retry", self._path, error)

    def _snapshot(self) -> _Snapshot | None:
        content = self._read()
        if content is None:
            # Editors may replace a file by rename; the next poll sees the new one. Log once.
            if self._seen is not None:
                logger.warning("%s: file is missing; keeping policy %s", self._path, self._policy.version)
            self._seen = None
            return None
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            return None
        return _Snapshot(stat.st_size, stat.st_mtime_ns, content, content_version(content))

    def _read(self) -> bytes | None:
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            return None
