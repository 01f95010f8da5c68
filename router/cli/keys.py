"""`router keys create|list|revoke|rotate`: API keys in Redis, hashed at rest, shown once.

Each key is one field of the hash `<prefix>api-keys`: its sha256 -> a JSON record (router.auth.KeyRecord:
name, tags, limits, expiry). The proxy looks keys up there on every request when router.yaml has
`server.redis_api_keys: true`, so a key created, changed, rotated or revoked here counts at once, in
every worker, with no restart.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from core.errors import ConfigError
from router.auth import REDIS_KEYS_HASH, KeyRecord, key_digest
from router.cli._common import RedisUrlOption, redis_url, reports_errors

if TYPE_CHECKING:
    from redis import Redis

keys_app = typer.Typer(
    help="API keys in Redis (hashed at rest; the proxy reads them per request with server.redis_api_keys: true).",
    no_args_is_help=True,
)

SECRET_PREFIX = "sk-router-"
PrefixOption = Annotated[
    str, typer.Option("--prefix", envvar="ROUTER_REDIS_PREFIX", help="Key prefix the proxy uses (ROUTER_REDIS_PREFIX).")
]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(value: str, option: str) -> float:
    """`90s`, `15m`, `12h` or `30d` in seconds."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise ConfigError(f"{option} takes a duration such as 90s, 15m, 12h or 30d, got {value!r}.")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_expiry(value: str, now: float) -> float:
    """A duration from now (`30d`) or an ISO date or time (`2027-01-31`, UTC when no zone is given)."""
    if _DURATION.match(value.strip()):
        return now + parse_duration(value, "--expires")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"--expires takes a duration (30d, 12h) or an ISO date (2027-01-31), got {value!r}."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() <= now:
        raise ConfigError(f"--expires {value} is in the past.")
    return moment.timestamp()


def _tags(values: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = {}
    for value in values:
        name, sep, tag = value.partition("=")
        if not sep or not name.strip() or not tag.strip():
            raise ConfigError(f"--tag takes NAME=VALUE (e.g. app=support), got {value!r}.")
        pairs[name.strip()] = tag.strip()
    if "key" in pairs:
        raise ConfigError("--tag key=... is reserved: a request's `key` metadata is always the key's name.")
    return tuple(sorted(pairs.items()))


def _connect(url: str | None, prefix: str) -> Redis:
    import redis

    from router.redis_client import sync_redis

    chosen = redis_url(url)
    if chosen is None:
        raise ConfigError("router keys needs Redis: pass --redis-url redis://HOST:6379/0 or set REDIS_URL.")
    client = sync_redis(chosen, prefix=prefix, prefix_setting="--prefix", socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as error:
        raise ConfigError(f"Cannot reach Redis at {chosen}: {error}") from None
    return client


def _records(client: Redis, prefix: str) -> dict[str, KeyRecord | None]:
    """Every stored key by digest (None: a malformed record)."""
    out: dict[str, KeyRecord | None] = {}
    for field, raw in client.hgetall(f"{prefix}{REDIS_KEYS_HASH}").items():
        digest = str(field)  # decode_responses: already str
        try:
            out[digest] = KeyRecord.from_json(raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            out[digest] = None
    return out


def _find(records: dict[str, KeyRecord | None], name_or_id: str) -> list[str]:
    """Digests of the keys named `name_or_id`, or whose id (digest prefix, 8+ hex digits) it is."""
    by_name = [d for d, r in records.items() if r is not None and r.name == name_or_id]
    if by_name:
        return by_name
    if re.fullmatch(r"[0-9a-f]{8,64}", name_or_id):
        return [d for d in records if d.startswith(name_or_id)]
    return []


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _announce(record: KeyRecord, secret: str, digest: str, what: str) -> None:
    typer.echo(
        f"{what} key '{record.name}' (id {digest[:12]}). The secret is printed once, below, and stored only as "
        "its sha256. The proxy accepts it when router.yaml has `server.redis_api_keys: true`.",
        err=True,
    )
    typer.echo(secret)


@keys_app.command("create")
@reports_errors
def create_command(
    name: Annotated[str, typer.Argument(help="The key's name: shown in the ledger, metrics, logs and reports.")],
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="NAME=VALUE (repeat), e.g. app=support team=search.")
    ] = None,
    daily_budget: Annotated[
        float | None, typer.Option("--daily-budget", min=0, help="USD per UTC day (default: router.yaml's per-key budget).")
    ] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens (prompt + answer) per minute.")] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="A duration from now (30d, 12h) or an ISO date (2027-01-31).")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May grade any request on /v1/feedback.")] = False,
    redis_url_: RedisUrlOption = None,
    prefix: PrefixOption = "router:",
) -> None:
    """Create a key and print its secret (once: only its sha256 is stored)."""
    if not name.strip() or name == "anonymous":
        raise ConfigError("Give the key a name (not 'anonymous'), e.g. `router keys create support-bot`.")
    now = time.time()
    record = KeyRecord(
        name, rpm, admin, _tags(tag or []), daily_budget, tpm,
        parse_expiry(expires, now) if expires is not None else None, now,
    )
    client = _connect(redis_url_, prefix)
    if _find(_records(client, prefix), name):
        raise ConfigError(f"A key named '{name}' exists; revoke it, rotate it, or choose another name.")
    secret = _new_secret()
    digest = key_digest(secret)
    client.hset(f"{prefix}{REDIS_KEYS_HASH}", digest, record.to_json())
    _announce(record, secret, digest, "Created")


@keys_app.command("list")
@reports_errors
def list_command(
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per key (no secrets: there are none).")] = False,
    redis_url_: RedisUrlOption = None,
    prefix: PrefixOption = "router:",
) -> None:
    """The keys in Redis: name, id, tags, limits, expiry."""
    records = _records(_connect(redis_url_, prefix), prefix)
    now = time.time()
    rows = sorted(records.items(), key=lambda item: (item[1] is None, item[1].name if item[1] else item[0]))
    if json_:
        for digest, record in rows:
            view = {"id": digest[:12], "malformed": True} if record is None else {
                "id": digest[:12], **json.loads(record.to_json()), "expired": record.expired(now)
            }
            typer.echo(json.dumps(view))
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(rows)} keys in {prefix}{REDIS_KEYS_HASH}")
    for column in ("name", "id", "tags", "daily budget", "rpm", "tpm", "expires", "created"):
        table.add_column(column)
    for digest, record in rows:
        if record is None:
            table.add_row("(malformed: refused)", digest[:12], *["-"] * 6)
            continue
        expiry = _when(record.expires_at) + (" (expired)" if record.expired(now) else "")
        table.add_row(
            record.name + (" (admin)" if record.admin else ""), digest[:12],
            " ".join(f"{k}={v}" for k, v in record.tags) or "-",
            "-" if record.daily_budget_usd is None else f"${record.daily_budget_usd:g}",
            str(record.requests_per_minute or "-"), str(record.tokens_per_minute or "-"), expiry, _when(record.created_at),
        )
    Console(width=140).print(table)


@keys_app.command("revoke")
@reports_errors
def revoke_command(
    name: Annotated[str, typer.Argument(help="The key's name, or its id from `router keys list`.")],
    redis_url_: RedisUrlOption = None,
    prefix: PrefixOption = "router:",
) -> None:
    """Remove a key: the next request that carries it gets 401."""
    client = _connect(redis_url_, prefix)
    found = _find(_records(client, prefix), name)
    if not found:
        raise ConfigError(f"No key named (or with id) '{name}'; `router keys list` shows them.")
    client.hdel(f"{prefix}{REDIS_KEYS_HASH}", *found)
    typer.echo(f"Revoked {len(found)} key(s): {', '.join(d[:12] for d in found)}.", err=True)


@keys_app.command("rotate")
@reports_errors
def rotate_command(
    name: Annotated[str, typer.Argument(help="The key's name, or its id.")],
    grace: Annotated[
        str, typer.Option("--grace", help="How long the old secret keeps working (0, 15m, 1d): time to roll clients.")
    ] = "0",
    redis_url_: RedisUrlOption = None,
    prefix: PrefixOption = "router:",
) -> None:
    """A new secret with the same name, tags and limits; the old one stops now or after --grace."""
    client = _connect(redis_url_, prefix)
    records = _records(client, prefix)
    found = [d for d in _find(records, name) if records[d] is not None]
    if not found:
        raise ConfigError(f"No key named (or with id) '{name}'; `router keys list` shows them.")
    current = max((r for d in found if (r := records[d]) is not None), key=lambda r: r.created_at or 0.0)
    now = time.time()
    secret = _new_secret()
    digest = key_digest(secret)
    hash_name = f"{prefix}{REDIS_KEYS_HASH}"
    seconds = 0.0 if grace.strip() == "0" else parse_duration(grace, "--grace")
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(hash_name, digest, replace(current, created_at=now).to_json())
        for old in found:
            record = records[old]
            assert record is not None
            if seconds > 0:
                until = now + seconds if record.expires_at is None else min(record.expires_at, now + seconds)
                pipe.hset(hash_name, old, replace(record, expires_at=until).to_json())
            else:
                pipe.hdel(hash_name, old)
        pipe.execute()
    _announce(current, secret, digest, "Rotated")
    typer.echo(
        f"The old secret {'stops now' if seconds == 0 else 'works until ' + _when(now + seconds)}.", err=True
    )
