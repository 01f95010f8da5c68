"""Whole-server readiness with several worker processes: each ready worker leaves a marker file.

The kernel hands each new connection to any worker, so the server is ready only when every
worker is: `router serve --workers N` makes a private folder, tells the workers about it in
ROUTER_SERVE_READY_DIR and ROUTER_SERVE_WORKERS, and each worker writes `ready-<pid>` into it
once its models are loaded (and removes it when it stops). `/readyz` counts the markers of
living processes, so a worker that died and was replaced by uvicorn does not count until its
successor is ready. One process (no folder): ready is this process's own state.

A file per worker, not Redis: readiness must not depend on Redis, and the folder lives exactly
as long as the server (its parent removes it).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

READY_DIR_ENV = "ROUTER_SERVE_READY_DIR"
WORKERS_ENV = "ROUTER_SERVE_WORKERS"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else: not ours, but alive
        return True
    return True


class WorkerReadiness:
    """This worker's marker, and how many of the server's workers are ready."""

    def __init__(self, folder: Path | None = None, workers: int = 1) -> None:
        self.folder = folder
        self.workers = workers if folder is not None else 1
        self._marker = folder / f"ready-{os.getpid()}" if folder is not None else None
        self._ready_here = False

    @classmethod
    def from_environment(cls) -> WorkerReadiness:
        """The folder and worker count `router serve` set, or a single process."""
        folder = os.environ.get(READY_DIR_ENV)
        workers = int(os.environ.get(WORKERS_ENV) or "1")
        return cls(Path(folder) if folder else None, workers)

    def mark_ready(self) -> None:
        """This worker has loaded its models."""
        self._ready_here = True
        if self._marker is not None:
            self._marker.write_text(str(os.getpid()))

    def clear(self) -> None:
        """This worker is stopping."""
        self._ready_here = False
        if self._marker is not None:
            with contextlib.suppress(FileNotFoundError):
                self._marker.unlink()

    def ready_workers(self) -> int:
        """Workers of this server that are ready now (living processes with a marker)."""
        if self.folder is None:
            return int(self._ready_here)
        count = 0
        for marker in self.folder.glob("ready-*"):
            pid = marker.name.removeprefix("ready-")
            if pid.isdigit() and _alive(int(pid)):
                count += 1
        return count

    def all_ready(self) -> bool:
        """Whether every worker of the server is ready."""
        return self._ready_here and self.ready_workers() >= self.workers
