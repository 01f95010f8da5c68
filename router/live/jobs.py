"""One job on the live queue: what a worker needs to grade or explore a request the proxy answered.

The job carries the prompt and the answer (the ledger may not keep prompts, and never keeps
answers), so a worker on any machine needs nothing but Redis and router.yaml.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.errors import DataError
from core.llm import Message

JobKind = Literal["grade", "explore", "shadow"]
JOB_KINDS: tuple[JobKind, ...] = ("grade", "explore", "shadow")


@dataclass(frozen=True, slots=True)
class Job:
    """A grading, exploration or shadow job for one answered request."""

    kind: JobKind
    request_id: str
    tier: str  # the tier that answered
    messages: tuple[Message, ...]
    answer: str
    policy_version: str
    enqueued_at: float
    app: str | None = None
    source: str | None = None
    key_tag: str | None = None
    difficulty: float | None = None
    cost_usd: float | None = None  # what the answer cost (a shadow job compares it with the candidate's)
    extra: dict[str, Any] = field(default_factory=dict)  # shadow jobs: candidate, budget, metadata, requested_model

    @property
    def prompt(self) -> str:
        """The last user message: what the ledger stores as the prompt, and what export groups by."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return str(message["content"])
        return str(self.messages[-1]["content"]) if self.messages else ""

    def to_json(self) -> str:
        """Compact JSON for the stream."""
        data = asdict(self)
        data["messages"] = [dict(m) for m in self.messages]
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Parse a job written by to_json; DataError for anything else (a poison message is dropped, not retried)."""
        try:
            data = json.loads(text)
            if data.get("kind") not in JOB_KINDS:
                raise ValueError(f"unknown kind {data.get('kind')!r}")
            messages = tuple(Message(role=str(m["role"]), content=str(m["content"])) for m in data["messages"])
            return cls(**{**data, "messages": messages})
        except (ValueError, TypeError, KeyError) as error:
            raise DataError(f"live job: malformed ({error})") from None
