"""Hot reload: keep the last valid policy live while the file is edited under a running proxy.

The live policy is one attribute that a reload rebinds. A request reads `store.policy` once and
keeps that reference, so a swap never changes the policy of a request already in flight, and no
lock is needed on the read path. The watcher hashes the file's bytes on every poll: mtime and size
alone miss a same-size edit made within the file system's timestamp granularity.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from policies.loader import content_version, parse_policy
from policies.policy import Policy
from core.errors import PolicyError

logger = logging.getLogger(__name__)


class PolicyStore:
    """The live policy of one file, swapped atomically by `reload` or by the polling watcher."""

    def __init__(self, path: str | Path, *, interval_s: float = 0.5) -> None:
        self._path = Path(path)
        self._interval_s = interval_s
        self._lock = threading.Lock()  # serialises reloads; readers never take it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        content = self._read()
        if content is None:
            raise PolicyError(
                f"{self._path}: no such policy file; pass the right path or create it."
            )
        # An invalid file at start-up is fatal: there is no last good policy to fall back on.
        self._policy = parse_policy(content, source=str(self._path))
        self._seen: str | None = self._policy.version  # content hash of the last file read

    @property
    def policy(self) -> Policy:
        """The live policy; read it once per request and keep the reference."""
        return self._policy

    @property
    def path(self) -> Path:
        """The watched file."""
        return self._path

    def reload(self) -> bool:
        """Re-read the file; swap in the new policy if it validates. True when the live policy changed."""
        with self._lock:
            content = self._read()
            if content is None:
                # Editors may replace a file by rename; the next poll sees the new one. Log once.
                if self._seen is not None:
                    logger.warning(
                        "%s: file is missing; keeping policy %s", self._path, self._policy.version
                    )
                self._seen = None
                return False
            version = content_version(content)
            if version == self._seen:
                return False
            self._seen = version
            try:
                new = parse_policy(content, source=str(self._path))
            except PolicyError as error:
                logger.error(
                    "%s: edit rejected (version %s), keeping policy %s:\n%s",
                    self._path,
                    version,
                    self._policy.version,
                    error,
                )
                return False
            old, self._policy = self._policy, new
            logger.info("%s: policy %s replaced by %s", self._path, old.version, new.version)
            return True

    def start(self) -> None:
        """Start the watcher thread: every `interval_s` seconds it hashes the file and reloads on change."""
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
                self.reload()
            except OSError as error:  # a transient file-system hiccup must not kill the watcher
                logger.warning("%s: cannot be read (%s); will retry", self._path, error)

    def _read(self) -> bytes | None:
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            return None
