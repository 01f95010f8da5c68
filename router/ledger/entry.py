"""One ledger record: what a routed request cost and, once graded, whether it was right."""

from __future__ import annotations

import hashlib
import re

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.names import FORCED_RULE

if TYPE_CHECKING:
    from policies.policy import Decision
    from router.execution import ExecutionResult

__all__ = ["FORCED_RULE", "NO_APP", "VERDICT_SOURCES", "LedgerEntry", "StoredRecord", "entry_from_dict", "source_rank"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """Everything the ledger keeps about one request (written once, graded later by feedback or eval)."""

    request_id: str
    timestamp: float  # unix seconds
    policy_version: str
    tier: str
    strategy: str
    rule: str
    difficulty: float | None
    models: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    status: str  # "ok", or an error kind such as "upstream_timeout", "rate_limited"
    key_tag: str | None = None  # which API key (a tag, never the key itself)
    app: str | None = None  # request metadata: the calling app
    prompt: str | None = None  # kept only when the ledger is configured to store prompts (for export -> retrain)
    source: str | None = None  # e.g. the eval dataset name; defaults to the app in exports
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        data = asdict(self)
        data["models"] = list(self.models)
        return data

    @classmethod
    def from_execution(
        cls,
        request_id: str,
        decision: Decision,
        outcome: ExecutionResult | BaseException | None,
        *,
        status: str,
        latency_s: float,
        timestamp: float | None = None,
        key_tag: str | None = None,
        app: str | None = None,
        prompt: str | None = None,
        source: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """The entry of one executed decision, however it ended.

        `outcome` is the answer's ExecutionResult; or the error the request failed with, whose
        calls paid before the failure (`spent_calls`) are what it cost; or None when nothing is
        known to have been spent. Fallbacks, escalation stages and the vote's confidence go into
        `extra`, beside the caller's own keys.
        """
        if outcome is None or isinstance(outcome, BaseException):
            # Here, not at the top: readers of the ledger (`router report`) need no execution layer.
            from router.execution import ExecutionResult, spent_calls

            paid = spent_calls(outcome) if outcome is not None else ()
            outcome = ExecutionResult("", "error", decision.tier, decision.strategy.type, paid)
        details = dict(extra or {})
        if outcome.tier != decision.tier:
            details["decided_tier"] = decision.tier
        if outcome.failed:
            details["failed_tiers"] = list(outcome.failed)
        if len(outcome.stages) > 1:
            details["stages"] = list(outcome.stages)
        if outcome.confidence is not None:
            details["confidence"] = outcome.confidence
        return cls(
            request_id=request_id,
            timestamp=time.time() if timestamp is None else timestamp,
            policy_version=decision.policy_version,
            tier=outcome.tier,
            strategy=outcome.strategy,
            rule=decision.rule,
            difficulty=decision.scored_difficulty,
            models=outcome.models,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            cost_usd=outcome.cost_usd,
            latency_s=latency_s,
            status=status,
            key_tag=key_tag,
            app=ledger_tag(app),
            prompt=prompt,
            source=source,
            extra=details,
        )


# FORCED_RULE (from the policy, which writes it into decisions) is the `rule` of a request whose
# tier was chosen by the caller (a tier name as `model`, or `router eval --force-tier`), not by the
# policy. Reports keep these out of the policy's own figures and use them as the always-<tier> reference.

# Where a verdict comes from, strongest first: the app's own feedback (/v1/feedback), a dataset's
# reference answer (`router eval`), the judge tier, agreement with the strongest tier's answer
# (the last two from `router worker`, docs/live.md). A request's verdict in the aggregates is
# its strongest source's; every source's verdict stays in the stream, so reports can tell them apart.
VERDICT_SOURCES: tuple[str, ...] = ("feedback", "reference", "judge", "agreement")


def source_rank(source: str) -> int:
    """0 for the strongest verdict source; ValueError naming the sources for an unknown one."""
    try:
        return VERDICT_SOURCES.index(source)
    except ValueError:
        raise ValueError(f"verdict source: must be one of {', '.join(VERDICT_SOURCES)} (got {source!r})") from None


# The app of a request that named none, in aggregates and reports.
NO_APP = "(none)"
# Where the apps past a ledger's `max_apps` are counted.
OTHER_APP = "(other)"

_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.:@/+-]")
MAX_TAG = 64


def ledger_tag(value: str | None) -> str | None:
    """A client-given tag (metadata.app) as the ledger keeps it: at most 64 characters of
    [A-Za-z0-9_.:@/+-]. Anything else is cut and stamped with a hash of the whole value, so two
    distinct long or odd values stay distinct while no key name grows with client input."""
    if value is None or (len(value) <= MAX_TAG and _TAG_CHARS.search(value) is None):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:8]
    return f"{_TAG_CHARS.sub('_', value)[: MAX_TAG - 9]}~{digest}"


class AppCap:
    """Bounds the distinct apps a ledger writes aggregates for: past `limit`, a new app counts as OTHER_APP.

    Each process tracks what it has seen (seeded from the ledger's own list at start), so several
    writers admit at most `limit` each: the number of per-app keys stays bounded whatever clients send.
    """

    __slots__ = ("limit", "seen")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def admit(self, app: str) -> str:
        """`app`, or OTHER_APP once `limit` other apps are known."""
        if app in self.seen or app in (NO_APP, OTHER_APP):
            return app
        if len(self.seen) >= self.limit:
            return OTHER_APP
        self.seen.add(app)
        return app

_FIELDS = frozenset(LedgerEntry.__dataclass_fields__)


def entry_from_dict(data: dict[str, Any]) -> LedgerEntry:
    """Rebuild an entry from `as_dict()` output; keys a newer version added are kept in `extra`."""
    known = {key: value for key, value in data.items() if key in _FIELDS}
    unknown = {key: value for key, value in data.items() if key not in _FIELDS}
    known["models"] = tuple(known.get("models") or ())
    if unknown:
        known["extra"] = {**(known.get("extra") or {}), **unknown}
    return LedgerEntry(**known)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """An entry as read back from the ledger, with its verdict (None = not graded)."""

    entry: LedgerEntry
    score: float | None = None  # the strongest source's latest verdict
    verdicts: dict[str, float] = field(default_factory=dict)  # source -> its latest verdict

    @property
    def graded(self) -> bool:
        """True once feedback or an eval gave a verdict."""
        return self.score is not None
