"""`direct`: one completion, as the tier's settings ask; the cheapest strategy."""

from __future__ import annotations

from typing import Literal

from strategies.base import Strategy


class Direct(Strategy):
    """Ask once and return the reply; confidence is unknown (None)."""

    type: Literal["direct"] = "direct"
