"""Client API keys: from the process settings, from router.yaml (by env var or sha256), or from Redis.

When no key is configured anywhere, the proxy is open and every request is the `anonymous`
principal. Keys are compared by their sha256, so neither router.yaml nor Redis ever holds one.
A key looked up in Redis is bounded by `server.redis.timeout_s`; when Redis fails, a key that
cannot be checked is refused with 503 (`router.redis_guard`), whatever `server.redis.on_error` says.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from core.errors import AuthenticationFailed
from policies.schema import ServerConfig
from router.redis_guard import RedisGuard

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

REDIS_KEYS_HASH = "api-keys"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key's name (a tag for ledger and metrics, never the key) and its own limits."""

    name: str
    requests_per_minute: int | None = None
    admin: bool = False  # may grade any request on /v1/feedback
    tags: tuple[tuple[str, str], ...] = ()  # e.g. app, team: request metadata a client cannot override
    daily_budget_usd: float | None = None  # replaces budgets.per_key_daily_usd for this key
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What Redis holds for one key (`router keys`), as JSON under the key's sha256 in `<prefix>api-keys`.

    Records written before tags, budgets, token limits and expiry existed read back with none of them.
    """

    name: str
    requests_per_minute: int | None = None
    admin: bool = False
    tags: tuple[tuple[str, str], ...] = ()
    daily_budget_usd: float | None = None
    tokens_per_minute: int | None = None
    expires_at: float | None = None  # unix seconds; refused from then on
    created_at: float | None = None

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({
            "name": self.name, "requests_per_minute": self.requests_per_minute, "admin": self.admin,
            "tags": dict(self.tags), "daily_budget_usd": self.daily_budget_usd,
            "tokens_per_minute": self.tokens_per_minute, "expires_at": self.expires_at, "created_at": self.created_at,
        })

    @classmethod
    def from_json(cls, raw: str | bytes) -> KeyRecord:
        """Read a stored record; ValueError, KeyError or TypeError when it is malformed."""
        data = json.loads(raw)

        def number(field: str, kind: type[int] | type[float]) -> Any:
            value = data.get(field)
            return None if value is None else kind(value)

        tags = data.get("tags") or {}
        if not isinstance(tags, dict):
            raise TypeError("tags must be an object")
        return cls(
            name=str(data["name"]), requests_per_minute=number("requests_per_minute", int),
            admin=data.get("admin") is True, tags=tuple(sorted((str(k), str(v)) for k, v in tags.items())),
            daily_budget_usd=number("daily_budget_usd", float), tokens_per_minute=number("tokens_per_minute", int),
            expires_at=number("expires_at", float), created_at=number("created_at", float),
        )

    def expired(self, now: float | None = None) -> bool:
        """Whether the key is past its expiry."""
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at

    def principal(self) -> Principal:
        """The caller this key makes."""
        return Principal(
            self.name, self.requests_per_minute, self.admin, self.tags, self.daily_budget_usd, self.tokens_per_minute
        )


ANONYMOUS = Principal("anonymous")


def key_digest(key: str) -> str:
    """Hex sha256 of an API key: what config and Redis store instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


async def store_api_key(
    redis: Redis, prefix: str, key: str, *, name: str, requests_per_minute: int | None = None, admin: bool = False
) -> None:
    """Register a key in Redis (needs `server.redis_api_keys: true` in router.yaml); `router keys` does more."""
    record = KeyRecord(name, requests_per_minute, admin, created_at=time.time())
    await redis.hset(f"{prefix}{REDIS_KEYS_HASH}", key_digest(key), record.to_json())



def authorization_of(headers: Mapping[str, str]) -> str | None:
    """The `Authorization` header, or an Azure-style `api-key: <key>` header read as `Bearer <key>`."""
    authorization = headers.get("authorization")
    if authorization is None and headers.get("api-key"):
        return f"Bearer {headers['api-key']}"
    return authorization


class Authenticator:
    """Resolves an `Authorization: Bearer` header to a Principal, or raises AuthenticationFailed."""

    def __init__(
        self, settings_keys: Sequence[SecretStr], redis: Redis | None, prefix: str, guard: RedisGuard | None = None
    ) -> None:
        self._settings_keys = {
            key_digest(key.get_secret_value()): Principal(f"key-{key_digest(key.get_secret_value())[:8]}")
            for key in settings_keys
        }
        self._redis = redis
        self._prefix = prefix
        self._guard = guard or RedisGuard()
        self._config: ServerConfig | None = None
        self._table: dict[str, Principal] = {}

    def _keys(self, config: ServerConfig) -> dict[str, Principal]:
        # Rebuilt only when a reload brings a new server section.
        if config is not self._config:
            table = dict(self._settings_keys)
            for entry in config.api_keys:
                if entry.sha256 is not None:
                    digest = entry.sha256
                else:
                    secret = os.environ.get(entry.key_env or "", "")
                    if not secret:
                        logger.warning(
                            "server.api_keys: %s names $%s, which is not set; that key cannot be used.",
                            entry.name, entry.key_env,
                        )
                        continue
                    digest = key_digest(secret)
                table[digest] = Principal(entry.name, entry.requests_per_minute, entry.admin)
            self._table, self._config = table, config
        return self._table

    def required(self, config: ServerConfig) -> bool:
        """Whether requests must carry a key under this configuration."""
        return bool(self._settings_keys or config.api_keys or config.redis_api_keys)

    async def authenticate(self, authorization: str | None, config: ServerConfig) -> Principal:
        """The caller's Principal; ANONYMOUS when no key is configured anywhere."""
        if not self.required(config):
            return ANONYMOUS
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed(
                "No API key provided: send it in the header `Authorization: Bearer <key>` (or `api-key: <key>`).",
                code="missing_api_key",
            )
        digest = key_digest(key)
        found = self._keys(config).get(digest)
        if found is None and config.redis_api_keys and self._redis is not None:
            found = await self._from_redis(digest, config)
        if found is None:
            raise AuthenticationFailed(
                "Incorrect API key provided; check the key, or ask the proxy's operator for one.",
                code="invalid_api_key",
            )
        return found

    async def _from_redis(self, digest: str, config: ServerConfig) -> Principal | None:
        if self._redis is None:
            return None
        lookup = self._redis.hget(f"{self._prefix}{REDIS_KEYS_HASH}", digest)
        raw = await self._guard.strict("api_key", lookup, config.redis)
        if raw is None:
            return None
        try:
            record = KeyRecord.from_json(raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.error("Redis API key %s... has a malformed record %r; it is refused.", digest[:8], raw)
            return None
        if record.expired():
            raise AuthenticationFailed(
                f"This API key ('{record.name}') expired; ask the proxy's operator for a new one.",
                code="expired_api_key",
            )
        return record.principal()
