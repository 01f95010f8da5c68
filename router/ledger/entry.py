"""One ledger record: what a routed request cost and, once graded, whether it was right."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
