"""The ledger's settings: where records go, how long they are kept, what survives an outage."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import ConfigError
from router.redis_client import URL_HELP, mask_url, require_slot_prefix, topology

DEFAULT_PREFIX = "router:"
# Where operators set the key prefix, for messages that ask them to change it.
PREFIX_SETTING = "the key prefix (ROUTER_REDIS_PREFIX for the proxy, --prefix for the CLI)"


class LedgerConfig(BaseModel):
    """Ledger settings; embeddable as the `ledger:` section of router.yaml (strict, unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # None: the embedded in-process store (nothing persists, `router report` cannot read it).
    redis_url: str | None = None
    key_prefix: str = Field(default=DEFAULT_PREFIX, min_length=1, max_length=100)
    # XADD MAXLEN ~: the stream of records and verdicts never holds many more entries than this.
    stream_maxlen: int = Field(default=100_000, ge=100)
    # How long a request can still receive feedback (its per-request hash, ~150 bytes, lives this long).
    record_ttl_days: float = Field(default=7.0, gt=0)
    # Daily aggregates expire this many days after their day ends; all-time aggregates stay.
    aggregate_ttl_days: float = Field(default=90.0, gt=0)
    # Writes held in memory while Redis is unreachable; the excess is dropped and counted.
    buffer_size: int = Field(default=10_000, ge=0)
    # Distinct metadata.app values one ledger process keeps aggregates for; later ones count as "(other)".
    max_apps: int = Field(default=1000, ge=1)
    # Prompts are personal data: kept only when asked, and needed for `router ledger export`.
    store_prompts: bool = False
    # A Redis call slower than this counts as an outage: the write is buffered, the request unharmed.
    timeout_s: float = Field(default=0.5, gt=0, le=30)

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            topology(value)
        except ConfigError:
            raise ValueError(f"must be {URL_HELP} (got {mask_url(value)!r})") from None
        return value

    @model_validator(mode="after")
    def _check_prefix(self) -> LedgerConfig:
        if self.redis_url is not None:
            require_slot_prefix(self.redis_url, self.key_prefix, PREFIX_SETTING)
        return self

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "redis_url" and isinstance(value, str) else value

    @property
    def display_url(self) -> str:
        """The Redis URL with its password masked, or a note that the embedded store is used."""
        return mask_url(self.redis_url) if self.redis_url else "(embedded, in-process)"

    def require_redis(self, client: object | None, fix: str) -> None:
        """Raise ConfigError(`fix`) unless there is a Redis to talk to: `redis_url`, or a client given."""
        if self.redis_url is None and client is None:
            raise ConfigError(fix)
