"""One ledger record: what a routed request cost and, once graded, whether it was right."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.names import FORCED_RULE

__all__ = ["FORCED_RULE", "NO_APP", "LedgerEntry", "StoredRecord", "entry_from_dict"]


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


# FORCED_RULE (from the policy, which writes it into decisions) is the `rule` of a request whose
# tier was chosen by the caller (a tier name as `model`, or `router eval --force-tier`), not by the
# policy. Reports keep these out of the policy's own figures and use them as the always-<tier> reference.

# The app of a request that named none, in aggregates and reports.
NO_APP = "(none)"

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
    score: float | None = None

    @property
    def graded(self) -> bool:
        """True once feedback or an eval gave a verdict."""
        return self.score is not None
