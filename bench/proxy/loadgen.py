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
from collections.abc import Awaitable, Callable
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


Send = Callable[[], Awaitable[bool]]


class RawConnection:
    """One kept-alive HTTP/1.1 connection sending the same POST again and again."""

    def __init__(self, url: str, payload: bytes) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer sk-bench\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> bool:
        """One request; True on HTTP 200."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
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


async def run_load(
    url: str, body: dict[str, object], *, concurrency: int, requests: int, max_seconds: float,
    client: str = "raw", warmup: int = 20,
) -> LoadResult:
    """Send `requests` POSTs of `body` to `url` from `concurrency` workers; stop early after max_seconds."""
    check_loopback(url)
    payload = json.dumps(body).encode()
    latencies: list[float] = []
    errors = 0
    raw = [RawConnection(url, payload) for _ in range(concurrency)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def via_httpx() -> bool:
            response = await http.post(url, content=payload, headers=headers)
            return response.status_code == 200

        senders: list[Send] = [c.send for c in raw] if client == "raw" else [via_httpx] * concurrency
        for _ in range(warmup):
            if not await senders[0]():
                raise SystemExit(f"{url} does not answer 200 to the benchmark request")
        remaining = requests
        deadline = time.perf_counter() + max_seconds

        async def worker(send: Send) -> None:
            nonlocal remaining, errors
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                started = time.perf_counter()
                if await send():
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
