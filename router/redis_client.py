"""Redis clients from a URL: one Redis, a Redis Cluster, or the master a Sentinel names.

Every process that talks to Redis (the proxy, the ledger, `router worker`, `router keys`, `router report`)
builds its client here, so all accept the same URLs:

    redis://HOST:PORT/DB, rediss://..., unix:///PATH?db=N      one Redis (as redis-py reads them)
    redis+cluster://HOST:PORT[,HOST:PORT...]/                   Redis Cluster (rediss+cluster: TLS)
    redis://HOST:PORT/?cluster=true                             the same
    redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]      the master Sentinel names (rediss+sentinel: TLS)

A Redis Cluster runs a Lua script or a MULTI only when all its keys hash to one slot. Every key the
router writes starts with a configurable prefix, and each script and transaction touches the keys of
one request, user or job, so a prefix with a hash tag (`{router}:`) puts all of them in one slot. Some
scripts also build key names from ARGV (the ledger's feedback script adds to the aggregates of the
request's tier, policy and app); those keys are only reachable because they carry the same hash tag.
A cluster URL with a prefix lacking one is refused here, before any key is written; the default
prefix is left as it is (`router:`) because changing it would orphan every single-Redis deployment's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

from core.errors import ConfigError

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis

Topology = Literal["single", "cluster", "sentinel"]
SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES
URL_HELP = (
    "a redis://, rediss:// or unix:// URL such as redis://127.0.0.1:6379/0, a Redis Cluster URL such as "
    "redis+cluster://10.0.0.1:6379,10.0.0.2:6379/, or a Sentinel URL such as redis+sentinel://10.0.0.1:26379/mymaster/0"
)
_TRUE = ("1", "true", "yes", "on")


def topology(url: str) -> Topology:
    """Which kind of deployment a Redis URL names (ConfigError for an unknown scheme)."""
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        return "cluster"
    if parts.scheme in SENTINEL_SCHEMES:
        return "sentinel"
    if parts.scheme in SINGLE_SCHEMES:
        cluster = parse_qs(parts.query).get("cluster", [""])[-1].lower()
        return "cluster" if cluster in _TRUE else "single"
    raise ConfigError(f"Redis URL {mask_url(url)!r}: unknown scheme {parts.scheme!r}; use {URL_HELP}.")


def hash_tag(prefix: str) -> str | None:
    """The hash tag every key starting with `prefix` hashes by, or None (Redis: first `{`, next `}`, non-empty)."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    return prefix[start + 1 : end] if end > start + 1 else None


def require_slot_prefix(url: str, prefix: str, setting: str) -> None:
    """Refuse a cluster URL whose key prefix would spread one request's keys over several slots."""
    if topology(url) == "cluster" and hash_tag(prefix) is None:
        raise ConfigError(
            f"{setting} is {prefix!r}, which has no hash tag; with the Redis Cluster URL {mask_url(url)!r} each "
            f"request's keys must share one slot. Set it to a prefix with a hash tag, such as "
            "'{router}:' (keys written under the old prefix stay where they are)."
        )


@dataclass(frozen=True)
class SentinelTarget:
    """What a redis+sentinel:// URL says: where the sentinels are, which master, which db, which credentials."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    ssl: bool


def parse_sentinel_url(url: str) -> SentinelTarget:
    """redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB] as a SentinelTarget."""
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        raise ConfigError(f"Redis URL {mask_url(url)!r} is not a redis+sentinel:// URL.")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, password = _credentials(credentials)
    path = [piece for piece in parts.path.split("/") if piece]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(
            f"Sentinel URL {mask_url(url)!r}: the path must be /SERVICE or /SERVICE/DB, e.g. "
            "redis+sentinel://10.0.0.1:26379/mymaster/0."
        )
    return SentinelTarget(
        sentinels=_hosts(hosts, 26379, url),
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        ssl=parts.scheme == "rediss+sentinel",
    )


def async_redis(
    url: str,
    *,
    prefix: str,
    prefix_setting: str,
    socket_timeout: float | None,
    socket_connect_timeout: float | None,
    no_retry: bool = False,
) -> aioredis.Redis:
    """An asyncio client for `url` with decode_responses=True, after checking `prefix` fits the deployment.

    no_retry: fail a call at its first error (callers that buffer or fail open do their own retrying).
    """
    require_slot_prefix(url, prefix, prefix_setting)
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
    }
    if no_retry:
        options["retry"] = Retry(NoBackoff(), 0)
    kind = topology(url)
    if kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes, extra = _cluster_options(url)
        cluster = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes], **extra, **options)
        # RedisCluster is no subclass of Redis, but it serves every command, script and same-slot
        # pipeline the router sends (tests/operating/test_redis_cluster.py runs them on a cluster).
        return cast("aioredis.Redis", cluster)
    if kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        target = parse_sentinel_url(url)
        sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(options, target))  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis 8

        class SentinelMaster(aioredis.Redis):
            """The master's client; closing it also closes the connections to the sentinels."""

            async def aclose(self, close_connection_pool: bool | None = None) -> None:
                await super().aclose(close_connection_pool)
                for client in sentinel.sentinels:
                    await client.aclose()

        master = sentinel.master_for(target.service, redis_class=SentinelMaster, **_master_kwargs(options, target))
        return cast("aioredis.Redis", master)
    return aioredis.Redis.from_url(url, **options)


def sync_redis(
    url: str, *, prefix: str, prefix_setting: str, socket_timeout: float | None, socket_connect_timeout: float | None
) -> redis.Redis:
    """A blocking client for `url` with decode_responses=True, after checking `prefix` fits the deployment."""
    require_slot_prefix(url, prefix, prefix_setting)
    import redis

    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
    }
    kind = topology(url)
    if kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        nodes, extra = _cluster_options(url)
        startup = [ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis 8
        cluster = RedisCluster(startup_nodes=startup, **extra, **options)
        return cast("redis.Redis", cluster)  # same surface for the router's commands, see async_redis
    if kind == "sentinel":
        from redis.sentinel import Sentinel

        target = parse_sentinel_url(url)
        # redis-py's sync Sentinel is untyped; master_for returns a redis.Redis bound to the current master.
        sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(options, target))  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis 8
        master = sentinel.master_for(target.service, **_master_kwargs(options, target))  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis 8
        return cast("redis.Redis", master)
    return redis.Redis.from_url(url, **options)


def _cluster_options(url: str) -> tuple[tuple[tuple[str, int], ...], dict[str, Any]]:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        raise ConfigError(f"Redis URL {mask_url(url)!r}: a Redis Cluster is reached over TCP, not a unix socket.")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, password = _credentials(credentials)
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ConfigError(f"Redis URL {mask_url(url)!r}: a Redis Cluster has only db 0; drop /{db} from the URL.")
    extra: dict[str, Any] = {"username": username, "password": password}
    if parts.scheme in ("rediss", "rediss+cluster"):
        extra["ssl"] = True
    return _hosts(hosts, 6379, url), extra


def _sentinel_kwargs(options: dict[str, Any], target: SentinelTarget) -> dict[str, Any]:
    # The URL's credentials are the master's: sentinels are often unauthenticated, and redis-py would
    # otherwise send them a password they reject.
    kwargs = {key: value for key, value in options.items() if key.startswith("socket_")}
    return {**kwargs, "ssl": True} if target.ssl else kwargs


def _master_kwargs(options: dict[str, Any], target: SentinelTarget) -> dict[str, Any]:
    kwargs = {**options, "db": target.db, "username": target.username, "password": target.password}
    return {**kwargs, "ssl": True} if target.ssl else kwargs


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, sep, password = text.partition(":")
    return (unquote(user) or None), (unquote(password) if sep else None)


def _hosts(text: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in text.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = port, str(default_port)
        if not host or not port.isdigit():
            raise ConfigError(f"Redis URL {mask_url(url)!r}: {item!r} is not HOST:PORT.")
        hosts.append((host.strip("[]"), int(port)))
    return tuple(hosts)


def mask_url(url: str) -> str:
    """The URL with any password replaced by `***`, fit for logs and error messages (any number of hosts)."""
    parts = urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hosts}").geturl()
