"""Shadowing a candidate policy on live traffic: which candidate, its file for the workers, its rows.

A candidate is active in one of two ways (the first found wins):

1. `router policy shadow --candidate edited.yaml` wrote it to Redis (`{p}live:shadow`), with its
   sample and daily budget: every proxy and worker sees it within seconds, no restart;
2. the live router.yaml has a `shadow:` section (`candidate:` a path relative to router.yaml,
   `sample:`, `daily_budget_usd:`): the proxy reads the file and publishes it for the workers.

Keys, under the ledger's prefix:

    {p}live:shadow                  hash: the candidate set by the CLI (version, sample, budget, source, started)
    {p}live:shadow:policy:<v>       JSON {text, source}: candidate version v's file, for any worker
    {p}live:shadow:versions         sorted set: every version shadowed, by when it was first published
    {p}live:shadow:rows:<v>         hash: request id -> one paired row (live and candidate, each graded)
    {p}live:shadow:work:<v>:<id>    hash: the steps of one job already done (a retried job redoes only the rest)

A row is written with HSETNX, so a job retried after a crash, or taken by two workers, adds one
row at most. Everything expires `SHADOW_TTL_S` after it was last written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from policies.loader import content_version
from policies.policy import Policy

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

SHADOW_TTL_S = 30 * 86_400
WORK_TTL_S = 86_400
# The proxy looks for a new (or stopped) candidate this often.
REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    """The active candidate as the proxy samples it."""

    version: str
    sample: float
    daily_budget_usd: float | None
    source: str  # the candidate file, as given
    origin: str  # "cli" (router policy shadow) or "router.yaml" (a shadow: section)
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class ShadowRow:
    """One shadowed request: what the live policy and the candidate each answered, cost and got right."""

    request_id: str
    timestamp: float
    live_tier: str
    live_cost_usd: float
    live_correct: float | None  # the judge's verdict; None when the judge gave none
    candidate_tier: str
    candidate_cost_usd: float
    candidate_correct: float | None
    same_plan: bool  # the candidate chose the live plan: the live answer stood for both
    difficulty: float | None = None
    candidate_difficulty: float | None = None

    @property
    def graded(self) -> bool:
        """Both answers have a verdict: the row counts in the paired comparison."""
        return self.live_correct is not None and self.candidate_correct is not None

    def to_json(self) -> str:
        """Compact JSON for Redis."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ShadowRow:
        """Parse a row written by to_json."""
        return cls(**json.loads(text))


class ShadowKeys:
    """Key names of shadowing under the ledger's prefix."""

    __slots__ = ("active", "prefix", "versions")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.active = f"{prefix}live:shadow"
        self.versions = f"{prefix}live:shadow:versions"

    def policy(self, version: str) -> str:
        """The candidate file of one version."""
        return f"{self.prefix}live:shadow:policy:{version}"

    def rows(self, version: str) -> str:
        """The paired rows of one version."""
        return f"{self.prefix}live:shadow:rows:{version}"

    def work(self, version: str, request_id: str) -> str:
        """The steps done for one job."""
        return f"{self.prefix}live:shadow:work:{version}:{request_id}"


class ShadowStore:
    """Shadowing's state in Redis: the active candidate, candidate files, per-job steps, paired rows."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = ShadowKeys(prefix)

    # -- which candidate ---------------------------------------------------------------------------

    async def publish(self, text: str, source: str) -> str:
        """Keep a candidate's file for the workers; returns its version (the policy version of the file)."""
        version = content_version(text.encode("utf-8"))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.policy(version), json.dumps({"text": text, "source": source}), ex=SHADOW_TTL_S)
            pipe.zadd(self.keys.versions, {version: time.time()}, nx=True)
            pipe.expire(self.keys.versions, SHADOW_TTL_S)
            await pipe.execute()
        return version

    async def start(self, text: str, source: str, sample: float, daily_budget_usd: float | None) -> str:
        """Make `text` the active candidate for every proxy and worker; returns its version."""
        version = await self.publish(text, source)
        record = {"version": version, "sample": repr(sample), "source": source, "started": repr(time.time()),
                  "budget": "" if daily_budget_usd is None else repr(daily_budget_usd)}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.active)
            pipe.hset(self.keys.active, mapping=cast(Any, record))
            await pipe.execute()
        return version

    async def stop(self) -> ShadowSpec | None:
        """Stop the candidate the CLI started (its rows stay); returns it, or None when there was none."""
        spec = await self.active()
        await self.redis.delete(self.keys.active)
        return spec

    async def active(self) -> ShadowSpec | None:
        """The candidate the CLI started, or None."""
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.active))
        if not raw.get("version"):
            return None
        budget = raw.get("budget") or None
        return ShadowSpec(
            version=raw["version"], sample=float(raw.get("sample") or 0.0),
            daily_budget_usd=None if budget is None else float(budget), source=raw.get("source", ""), origin="cli",
            started_at=float(raw["started"]) if raw.get("started") else None,
        )

    async def candidate_text(self, version: str) -> tuple[str, str] | None:
        """(file text, source) of a candidate version, or None when it was never published (or expired)."""
        raw = await self.redis.get(self.keys.policy(version))
        if raw is None:
            return None
        data = json.loads(raw)
        return str(data["text"]), str(data["source"])

    async def versions(self) -> list[tuple[str, float]]:
        """Every version shadowed, oldest first, with when it was first published."""
        reply = cast(list[tuple[str, float]], await self.redis.zrange(self.keys.versions, 0, -1, withscores=True))
        return [(str(version), float(at)) for version, at in reply]

    # -- one job's steps, and its row --------------------------------------------------------------

    async def work(self, version: str, request_id: str) -> dict[str, str]:
        """The steps already done for this job."""
        return cast(dict[str, str], await self.redis.hgetall(self.keys.work(version, request_id)))

    async def save_work(self, version: str, request_id: str, **steps: Any) -> None:
        """Note steps done for this job (kept a day)."""
        key = self.keys.work(version, request_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=cast(Any, {name: json.dumps(value) for name, value in steps.items()}))
            pipe.expire(key, WORK_TTL_S)
            await pipe.execute()

    async def has_row(self, version: str, request_id: str) -> bool:
        """True when this request's row is written."""
        return bool(await self.redis.hexists(self.keys.rows(version), request_id))

    async def add_row(self, version: str, row: ShadowRow) -> bool:
        """Write a request's row once; False when it was written before. The job's steps are then dropped."""
        key = self.keys.rows(version)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, row.request_id, row.to_json())
            pipe.expire(key, SHADOW_TTL_S)
            pipe.delete(self.keys.work(version, row.request_id))
            results = await pipe.execute()
        return bool(results[0])

    async def rows(self, version: str) -> list[ShadowRow]:
        """Every row of a version, oldest first."""
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.rows(version)))
        return sorted((ShadowRow.from_json(text) for text in raw.values()), key=lambda r: (r.timestamp, r.request_id))


def section_candidate(policy: Policy) -> Path | None:
    """The candidate file named by the live policy's `shadow:` section (relative to router.yaml), or None."""
    section = policy.config.shadow
    if section.candidate is None or section.sample <= 0:
        return None
    path = Path(section.candidate).expanduser()
    return path if path.is_absolute() else Path(policy.source).parent / path


class ShadowSource:
    """The proxy's view of the active candidate, re-read at most every REFRESH_S (never on the request path)."""

    def __init__(self, store: ShadowStore) -> None:
        self.store = store
        self.current: ShadowSpec | None = None
        self.read_at = float("-inf")
        self._file: tuple[Path, int, int, str, float] | None = None  # path, mtime_ns, size; version, published at
        self._warned: set[str] = set()

    def stale(self) -> bool:
        """True when the candidate should be looked up again."""
        return time.monotonic() - self.read_at >= REFRESH_S

    async def refresh(self, policy: Policy) -> ShadowSpec | None:
        """Look the candidate up: Redis's (the CLI's) first, else the policy's shadow section."""
        self.read_at = time.monotonic()
        spec = await self.store.active()
        if spec is None:
            spec = await self._from_section(policy)
        if spec != self.current:
            if spec is None:
                logger.info("live: shadowing stopped")
            else:
                logger.info("live: shadowing candidate %s (%s) on %.1f%% of routed requests",
                            spec.version, spec.source, 100 * spec.sample)
        self.current = spec
        return spec

    async def _from_section(self, policy: Policy) -> ShadowSpec | None:
        path = section_candidate(policy)
        if path is None:
            return None
        section = policy.config.shadow
        try:
            stat = await asyncio.to_thread(path.stat)
            cached = self._file
            # Published again hourly, so that the workers' copy outlives SHADOW_TTL_S however long this runs.
            if (cached is None or cached[:3] != (path, stat.st_mtime_ns, stat.st_size)
                    or time.monotonic() - cached[4] > 3600):
                text = await asyncio.to_thread(path.read_text, encoding="utf-8")
                version = await self.store.publish(text, str(path.resolve()))
                self._file = cached = (path, stat.st_mtime_ns, stat.st_size, version, time.monotonic())
        except (OSError, UnicodeDecodeError) as error:
            if str(path) not in self._warned:
                logger.warning("live: shadow.candidate %s cannot be read (%s); nothing is shadowed.", path, error)
                self._warned.add(str(path))
            return None
        return ShadowSpec(cached[3], section.sample, section.daily_budget_usd, str(path), "router.yaml")
