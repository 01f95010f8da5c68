"""Redis key names under the configured prefix (one place, so writers and readers agree).

    {p}stream                         capped stream: records (field `r`: the entry as JSON) and
                                      verdicts (fields `v`: request id, `s`: score in millionths)
    {p}req:{request_id}               per-request hash: tier, policy, app, day, cost, score (TTL)
    {p}agg:all                        all-time totals
    {p}agg:{dimension}:{value}        all-time per tier / policy / app
    {p}agg:day:{YYYY-MM-DD}           one UTC day (TTL)
    {p}agg:day:{day}:{dimension}:{v}  one UTC day per tier / policy / app (TTL)
    {p}dims:{dimension}               set of the values seen, so readers need no SCAN

Every key of one request shares the prefix, so a prefix with a hash tag such as `{router}:` keeps
them in one Redis Cluster slot, as the Lua scripts require there.
"""

from __future__ import annotations

import time
from typing import Literal

Dimension = Literal["tier", "policy", "app"]
DIMENSIONS: tuple[Dimension, ...] = ("tier", "policy", "app")


def utc_day(timestamp: float) -> str:
    """The UTC calendar day of a unix time, as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


class LedgerKeys:
    """Builds every key name from one prefix (FEEDBACK_LUA in scripts.py rebuilds the aggregate names)."""

    __slots__ = ("prefix", "stream")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.stream = f"{prefix}stream"

    def request(self, request_id: str) -> str:
        """The per-request hash that feedback looks up."""
        return f"{self.prefix}req:{request_id}"

    def dims(self, dimension: Dimension) -> str:
        """The set of values seen for a dimension."""
        return f"{self.prefix}dims:{dimension}"

    def total(self, dimension: Dimension | None = None, value: str = "") -> str:
        """An all-time aggregate: everything, or one value of a dimension."""
        return f"{self.prefix}agg:all" if dimension is None else f"{self.prefix}agg:{dimension}:{value}"

    def daily(self, day: str, dimension: Dimension | None = None, value: str = "") -> str:
        """A one-day aggregate: the whole day, or one value of a dimension on that day."""
        base = f"{self.prefix}agg:day:{day}"
        return base if dimension is None else f"{base}:{dimension}:{value}"
