"""Past one Redis: the router on a local three-master Redis Cluster that these tests start, and on Sentinel.

Every script and transaction the router sends must keep its keys in one slot; the cluster refuses
(CROSSSLOT) otherwise, so each test here fails if some write spreads over slots.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import SecretStr
from redis.cluster import RedisCluster
from redis.crc import key_slot
from typer.testing import CliRunner

from core.errors import ConfigError
from router.cli import app
from router.ledger import LedgerConfig, RedisLedger, SyncRedisLedger
from router.ledger.counts import Counts
from policies.schema import RedisConfig
from router.live.queue import JobQueue
from router.live.shadow import ShadowRow, ShadowStore
from router.live.verdicts import VerdictWriter
from router.redis_client import async_redis, hash_tag, parse_sentinel_url, sync_redis, topology
from router.redis_guard import RedisGuard
from router.server import ServerSettings, create_app
from router.server.sessions import Pin, RedisPins
from tests.ledger.support import expected_aggregates, make_entry
from tests.server.conftest import Proxy, StartProxy
from tests.server.support import write_policy

runner = CliRunner()
# A request-path budget well above the default 0.25 s: the cluster client's first calls discover
# the slots and open a connection per node, which a loaded CI machine can stall past 0.25 s (seen
# once: a 503 redis_unavailable on the first request). What is tested here is behaviour, not latency.
REDIS_KEYS = "server:\n  redis_api_keys: true\n  redis: {timeout_s: 5}\n"


def _free_cluster_port() -> int:
    """A loopback port that is free, and whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randint(20_000, 40_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(check: object, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if callable(check) and check():
                return
        except (redis.exceptions.RedisError, OSError):
            pass
        time.sleep(0.1)
    pytest.skip(f"{what} did not happen within {timeout_s}s")


def _start_server(directory: Path, port: int, *options: str) -> Path:
    """Start a daemonized redis-server; returns its pid file (the only handle used to stop it)."""
    pidfile = directory / f"{port}.pid"
    subprocess.run(
        ["redis-server", *options, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "yes", "--dir", str(directory), "--pidfile", str(pidfile), "--logfile", str(directory / f"{port}.log")],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
    )
    return pidfile


def _cluster_state(port: int) -> str:
    with redis.Redis(port=port, decode_responses=True) as client:
        return str(client.cluster("info").get("cluster_state"))


def _ping(port: int) -> bool:
    with redis.Redis(port=port) as client:
        return bool(client.ping())


def _stop(pidfiles: list[Path]) -> None:
    for pidfile in pidfiles:
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass  # never started, or already gone


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-master Redis Cluster on loopback ports, for this module; its URL is redis+cluster://."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed to start a local Redis Cluster")
    directory = tmp_path_factory.mktemp("cluster")
    ports: list[int] = []
    while len(ports) < 3:
        port = _free_cluster_port()
        if port not in ports and port + 10_000 not in ports:
            ports.append(port)
    pidfiles: list[Path] = []
    try:
        for port in ports:
            pidfiles.append(
                _start_server(directory, port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf")
            )
        for port in ports:
            _wait(lambda port=port: _ping(port), f"redis-server --cluster-enabled on {port} answering")
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )
        if created.returncode != 0:
            pytest.skip(f"redis-cli --cluster create failed: {created.stdout[-500:]} {created.stderr[-500:]}")
        for port in ports:
            _wait(lambda port=port: _cluster_state(port) == "ok", f"cluster_state:ok on {port}")
        yield f"redis+cluster://127.0.0.1:{ports[0]}/"
    finally:
        _stop(pidfiles)


@pytest.fixture
def prefix() -> str:
    """A prefix of this test's own, with a hash tag so that its keys share one slot."""
    return f"{{test-{uuid.uuid4().hex[:8]}}}:"


@pytest.fixture
def cluster(cluster_url: str) -> Iterator[RedisCluster]:
    client = sync_redis(cluster_url, prefix="{x}:", prefix_setting="test", socket_timeout=5, socket_connect_timeout=5)
    assert isinstance(client, RedisCluster)
    yield client
    client.close()


def _keys_under(cluster: RedisCluster, prefix: str) -> list[str]:
    """Every key under the prefix, by SCAN over all the cluster's masters (redis-py's RedisCluster.scan_iter)."""
    return [str(key) for key in cluster.scan_iter(match=f"{_glob(prefix)}*", count=1000)]


def _glob(prefix: str) -> str:
    return "".join(f"\\{c}" if c in "[]*?\\{}" else c for c in prefix)


def _one_slot(cluster: RedisCluster, keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


def test_the_ledger_on_a_cluster_records_grades_and_reads_back(cluster_url: str, prefix: str, cluster: RedisCluster) -> None:
    config = LedgerConfig(redis_url=cluster_url, key_prefix=prefix)
    entries = [make_entry(n, tier=("fast", "strong")[n % 2], app=("a", "b", "c")[n % 3]) for n in range(12)]

    async def write() -> list[bool]:
        ledger = RedisLedger(config)
        for entry in entries:
            await ledger.record(entry)
        graded = [await ledger.feedback(f"req-{n}", (n % 4) / 3) for n in range(0, 12, 2)]
        graded.append(await ledger.feedback("no-such-request", 1.0))
        await ledger.aclose()
        return graded

    assert asyncio.run(write()) == [True] * 6 + [False]
    reader = SyncRedisLedger(config)
    assert reader.feedback("req-1", 1.0) is True  # the blocking client (router report, eval) writes too
    records = reader.records()
    assert [r.entry.request_id for r in records] == [e.request_id for e in entries]
    assert {r.entry.request_id: r.score for r in records}["req-2"] == pytest.approx(2 / 3)
    stored = {key: Counts.from_hash(cluster.hgetall(key)) for key in _keys_under(cluster, f"{prefix}agg:")}
    assert stored == expected_aggregates(records, config)
    assert reader.aggregates("tier")["fast"].requests == 6
    reader.close()
    every_key = _keys_under(cluster, prefix)
    assert len(every_key) > 20 and len(_one_slot(cluster, every_key)) == 1

    report = runner.invoke(app, ["report", "--by", "tier", "--json", "--redis-url", cluster_url, "--prefix", prefix])
    assert report.exit_code == 0, report.output
    assert "strong" in report.stdout and "fast" in report.stdout


def keys_cli(url: str, prefix: str, *args: str) -> str:
    result = runner.invoke(app, ["keys", *args, "--redis-url", url, "--prefix", prefix])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def chat(proxy: Proxy, secret: str) -> httpx.Response:
    return httpx.post(
        f"{proxy.api}/chat/completions", headers={"authorization": f"Bearer {secret}"},
        json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]}, timeout=30,
    )


def test_the_proxy_on_a_cluster_reads_keys_and_enforces_rate_limits_and_budgets(
    start_proxy: StartProxy, cluster_url: str, prefix: str, cluster: RedisCluster
) -> None:
    proxy = start_proxy(redis_url=cluster_url, redis_prefix=prefix, extra_yaml=REDIS_KEYS)
    limited = keys_cli(cluster_url, prefix, "create", "one-a-minute", "--rpm", "1")
    broke = keys_cli(cluster_url, prefix, "create", "broke", "--daily-budget", "0")
    spender = keys_cli(cluster_url, prefix, "create", "spender", "--daily-budget", "5", "--tpm", "100000")
    assert "one-a-minute" in keys_cli(cluster_url, prefix, "list")

    first = chat(proxy, limited)
    assert first.status_code == 200, first.text
    second = chat(proxy, limited)
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded", second.text
    refused = chat(proxy, broke)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded", refused.text
    assert chat(proxy, spender).status_code == 200

    every_key = _keys_under(cluster, prefix)
    # The spend reservation and its settlement, the token count, the rate bucket and the key records.
    assert {key.split(":")[1] for key in every_key} >= {"api-keys", "rate", "spend", "tpm"}
    assert len(_one_slot(cluster, every_key)) == 1
    rotated = keys_cli(cluster_url, prefix, "rotate", "spender")  # a MULTI on the key hash
    assert chat(proxy, rotated).status_code == 200
    keys_cli(cluster_url, prefix, "revoke", "spender")
    assert chat(proxy, rotated).json()["error"]["code"] == "invalid_api_key"


def test_the_live_queue_on_a_cluster(cluster_url: str, prefix: str) -> None:
    async def scenario() -> list[str]:
        client = async_redis(cluster_url, prefix=prefix, prefix_setting="test", socket_timeout=5, socket_connect_timeout=5)
        queue = JobQueue(client, prefix)
        await queue.ensure_group()
        assert await queue.enqueue(json.dumps({"job": 1}), max_depth=10)
        assert await queue.enqueue(json.dumps({"job": 2}), max_depth=2)
        assert not await queue.enqueue(json.dumps({"job": 3}), max_depth=2)  # shed at the depth limit
        delivered = await queue.read("worker-1", count=10, block_ms=100)
        stats = await client.hgetall(queue.keys.stats)
        await client.aclose()
        assert stats == {"enqueued": "2", "shed": "1"}
        return [delivery.payload for delivery in delivered]

    assert [json.loads(p)["job"] for p in asyncio.run(scenario())] == [1, 2]


def test_verdicts_spend_shadowing_and_session_pins_on_a_cluster(cluster_url: str, prefix: str, cluster: RedisCluster) -> None:
    """The worker's scripts and transactions (each touching several keys) and the proxy's session pins."""
    config = LedgerConfig(redis_url=cluster_url, key_prefix=prefix)
    row = ShadowRow("req-1", time.time(), "fast", 0.001, 1.0, "strong", 0.004, 1.0, same_plan=False)

    async def scenario() -> tuple[list[int], float, list[ShadowRow], bool, Pin | None]:
        client = async_redis(cluster_url, prefix=prefix, prefix_setting="test", socket_timeout=5, socket_connect_timeout=5)
        writer = VerdictWriter(client, config)
        assert await writer.record(make_entry(1, tier="strong"))
        verdicts = [await writer.verdict("req-1", "strong", 1.0, "judge"), await writer.verdict("req-1", "strong", 0.0, "judge")]
        await writer.spend("grading", 0.25)
        spent = await writer.spent_today("grading")
        shadow = ShadowStore(client, prefix)
        version = await shadow.start("policy: text", "candidate.yaml", 0.5, 1.0)
        await shadow.save_work(version, "req-1", live={"tier": "fast"})
        assert await shadow.add_row(version, row) and not await shadow.add_row(version, row)
        rows, work_left = await shadow.rows(version), bool(await shadow.work(version, "req-1"))
        pins = RedisPins(client, prefix, RedisGuard(), RedisConfig)
        await pins.pin("conversation", "fast", 0.2, ("fast", "strong"), 60)
        await pins.pin("conversation", "strong", 0.9, ("fast", "strong"), 60)  # escalates the conversation
        pin = await pins.pin("conversation", "fast", 0.1, ("fast", "strong"), 60)
        await client.aclose()
        return verdicts, spent, rows, work_left, pin

    verdicts, spent, rows, work_left, pin = asyncio.run(scenario())
    assert verdicts[0] > 0 and verdicts[1] == -1  # the second judge verdict of the same request is a duplicate
    assert spent == pytest.approx(0.25) and rows == [row] and not work_left
    assert pin == Pin("strong", 0.2, True)  # held at the escalated tier, with the first turn's difficulty
    reader = SyncRedisLedger(config)
    assert reader.aggregates("tier")["strong"].graded == 1
    reader.close()
    assert len(_one_slot(cluster, _keys_under(cluster, prefix))) == 1


def test_a_cluster_url_with_a_prefix_without_hash_tag_is_refused(cluster_url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ROUTER_REDIS_PREFIX is 'router:', which has no hash tag.*'\{router\}:'"):
        async_redis(cluster_url, prefix="router:", prefix_setting="ROUTER_REDIS_PREFIX", socket_timeout=1,
                    socket_connect_timeout=1)
    with pytest.raises(ConfigError, match=r"key prefix .*no hash tag"):
        LedgerConfig(redis_url=cluster_url, key_prefix="router:")
    with pytest.raises(ConfigError, match="no hash tag"):
        LedgerConfig(redis_url="redis://127.0.0.1:7000/?cluster=true", key_prefix="{}:router:")  # empty tag
    settings = ServerSettings(
        config=write_policy(tmp_path / "router.yaml", upstream="http://127.0.0.1:9/v1"), redis_url=SecretStr(cluster_url),
        redis_prefix="router:",
    )
    with pytest.raises(ConfigError, match=r"ROUTER_REDIS_PREFIX for the proxy.*no hash tag"):
        create_app(settings)  # `router serve` stops here, before it loads a model
    result = runner.invoke(app, ["keys", "list", "--redis-url", cluster_url, "--prefix", "router:"])
    assert result.exit_code != 0 and "--prefix is 'router:', which has no hash tag" in result.output
    LedgerConfig(redis_url="redis://127.0.0.1:6379/0", key_prefix="router:")  # one Redis: any prefix, as before


def test_redis_urls_name_their_topology_and_sentinel_urls_their_arguments() -> None:
    assert topology("redis://h:6379/0") == topology("unix:///tmp/redis.sock") == "single"
    assert topology("redis+cluster://a:1,b:2/") == topology("rediss://a:1/?cluster=true") == "cluster"
    assert topology("redis+sentinel://a:26379/mymaster") == "sentinel"
    with pytest.raises(ConfigError, match="unknown scheme 'http'"):
        topology("http://a:1/")
    assert [hash_tag(p) for p in ("{router}:", "app:{r}:", "router:", "{}:x", "a{b")] == ["router", "r", None, None, None]

    target = parse_sentinel_url("redis+sentinel://user:s%40cret@10.0.0.1:26379,10.0.0.2/mymaster/3")
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (target.service, target.db, target.username, target.password, target.ssl) == (
        "mymaster", 3, "user", "s@cret", False
    )
    assert parse_sentinel_url("rediss+sentinel://s:1/m").ssl and parse_sentinel_url("redis+sentinel://s:1/m").db == 0
    for bad in ("redis+sentinel://s:1/", "redis+sentinel://s:1/m/x", "redis+sentinel://s:port/m"):
        with pytest.raises(ConfigError, match="Sentinel URL|HOST:PORT"):
            parse_sentinel_url(bad)
    with pytest.raises(ConfigError, match="only db 0"):
        sync_redis("redis+cluster://a:1/2", prefix="{r}:", prefix_setting="x", socket_timeout=1, socket_connect_timeout=1)
    with pytest.raises(ValueError, match=r"redis\+sentinel://"):
        LedgerConfig(redis_url="http://a:1/")


def test_a_sentinel_url_reaches_the_master_the_sentinel_names(tmp_path: Path) -> None:
    """A real redis-server and a real sentinel monitoring it; the client writes where the sentinel points."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed to start a sentinel")
    master, sentinel = _free_cluster_port(), _free_cluster_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master} 1\n")
    pidfiles = [_start_server(tmp_path, master)]
    try:
        pidfile = tmp_path / f"{sentinel}.pid"
        subprocess.run(
            ["redis-server", str(conf), "--sentinel", "--daemonize", "yes", "--pidfile", str(pidfile),
             "--logfile", str(tmp_path / "sentinel.log")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
        )
        pidfiles.append(pidfile)
        _wait(lambda: redis.Redis(port=sentinel).sentinel_get_master_addr_by_name("mymaster"), "the sentinel answering")
        url = f"redis+sentinel://127.0.0.1:{sentinel}/mymaster/2"

        async def write() -> None:
            client = async_redis(url, prefix="router:", prefix_setting="x", socket_timeout=5, socket_connect_timeout=5)
            await client.set("router:probe", "async")
            await client.aclose()

        asyncio.run(write())
        client = sync_redis(url, prefix="router:", prefix_setting="x", socket_timeout=5, socket_connect_timeout=5)
        client.set("router:probe-sync", "sync")
        client.close()
        direct = redis.Redis(port=master, db=2, decode_responses=True)
        assert (direct.get("router:probe"), direct.get("router:probe-sync")) == ("async", "sync")
        direct.close()
    finally:
        _stop(pidfiles)
