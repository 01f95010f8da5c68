"""An async load generator for OpenAI-compatible endpoints: bounded in requests and time, loopback only.

Each of `concurrency` workers sends one request after another over its own kept-alive
connection until `requests` are done or `max_seconds` have passed. Latency is measured per
request on the client; throughput is completed requests over the wall time of the run.

Two clients:
- `raw` (default): HTTP/1.1 on asyncio streams, prebuilt request bytes, Content-Length bodies
  only. About 30 us of CPU per request, so on a small machine it measures the server, not itself.
- `httpx`: the usual async client. Measured here it spends ~0.7 ms of CPU per request at
  concurrency 1 and ~2.8 ms at 32 (its connection pool), so it caps any target near 800 req/s
  on two cores and adds its own tail: fine to check the others, not to rank fast servers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import numpy as np

CLIENTS = ("raw", "httpx")


@dataclass(frozen=True)
class LoadResult:
    """What one run measured."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def check_loopback(url: str) -> None:
    """Refuse to load anything but this machine."""
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to send load to {host}: the load generator is for loopback only")


Send = Callable[[int], Awaitable[bool]]  # sends body number i


def raw_request(url: str, payload: bytes) -> bytes:
    """The bytes of one POST of `payload` to `url`, built before the clock starts."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    return (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer sk-bench\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


class RawConnection:
    """One kept-alive HTTP/1.1 connection sending prebuilt POSTs, one after another."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> bool:
        """One request; True on HTTP 200."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise SystemExit("the raw client needs Content-Length responses; use --client httpx for this target")
        await self.reader.readexactly(length)
        return head[9:12] == b"200"

    async def close(self) -> None:
        """Close the socket."""
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


def raw_sender(connection: RawConnection, requests: list[bytes]) -> Send:
    """Send request number i over one raw connection."""

    async def send(i: int) -> bool:
        return await connection.send(requests[i])

    return send


def httpx_sender(http: httpx.AsyncClient, url: str, headers: dict[str, str], payloads: list[bytes]) -> Send:
    """POST payload number i with the shared httpx client."""

    async def send(i: int) -> bool:
        response = await http.post(url, content=payloads[i], headers=headers)
        return response.status_code == 200

    return send


async def run_load(
    url: str, body: dict[str, object] | Sequence[dict[str, object]], *, concurrency: int, requests: int,
    max_seconds: float, client: str = "raw", warmup: int | Sequence[dict[str, object]] = 20,
) -> LoadResult:
    """POST to `url` from `concurrency` workers until `requests` are done or max_seconds pass.

    `body` is one request body sent again and again, or a list sent in order, each once (then
    `requests` is capped at its length). `warmup` is a count of unmeasured repeats of the first
    body, or a list of unmeasured bodies of their own (so that measured prompts stay unseen).
    """
    check_loopback(url)
    bodies = [body] if isinstance(body, dict) else list(body)
    if not isinstance(body, dict):
        requests = min(requests, len(bodies))
    warm = [bodies[0]] * warmup if isinstance(warmup, int) else list(warmup)
    payloads = [json.dumps(b).encode() for b in bodies]
    warm_payloads = [json.dumps(b).encode() for b in warm]
    latencies: list[float] = []
    errors = 0
    raw = [RawConnection(url) for _ in range(concurrency)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        if client == "raw":
            prebuilt = [raw_request(url, payload) for payload in payloads]
            warm_prebuilt = [raw_request(url, payload) for payload in warm_payloads]
            senders: list[Send] = [raw_sender(connection, prebuilt) for connection in raw]
            warm_send = raw_sender(raw[0], warm_prebuilt)
        else:
            senders = [httpx_sender(http, url, headers, payloads)] * concurrency
            warm_send = httpx_sender(http, url, headers, warm_payloads)
        for i in range(len(warm)):
            if not await warm_send(i):
                raise SystemExit(f"{url} does not answer 200 to the benchmark request")
        sent = 0
        deadline = time.perf_counter() + max_seconds

        async def worker(send: Send) -> None:
            nonlocal sent, errors
            while sent < requests and time.perf_counter() < deadline:
                index = sent % len(payloads)
                sent += 1
                started = time.perf_counter()
                if await send(index):
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(send) for send in senders))
        seconds = time.perf_counter() - started
    for connection in raw:
        await connection.close()
    values = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return LoadResult(len(latencies), errors, seconds, float(np.percentile(values, 50)), float(np.percentile(values, 99)))
