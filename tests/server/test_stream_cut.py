"""An upstream that resets the connection mid-stream: the client gets the text once and one error
event (no retry after the first byte), and the ledger records the tokens that were really sent."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.server.conftest import StartProxy
from tests.conftest import free_port

CHUNK = 'data: {{"id":"up","object":"chat.completion.chunk","created":0,"model":"m","choices":[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":null}}]}}\n\n'


class ResettingUpstream:
    """A raw socket server: SSE headers, two content chunks, then a TCP reset. Counts connections."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            conn.sendall(head)
            for text in ("Hello", " world"):
                data = CHUNK.format(text=text).encode()
                conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
            conn.close()

    def __enter__(self) -> ResettingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


@pytest.fixture
def resetting() -> Iterator[ResettingUpstream]:
    with ResettingUpstream() as upstream:
        yield upstream


def test_a_stream_cut_after_text_is_not_retried(start_proxy: StartProxy, resetting: ResettingUpstream) -> None:
    proxy = start_proxy(real_backends=True, upstream_url=f"http://127.0.0.1:{resetting.port}/v1", direct_http=True)
    texts, errors, request_id = _stream(proxy.url)
    assert "".join(texts) == "Hello world"  # once: no retry re-sent it
    assert len(errors) == 1
    assert resetting.connections == 1
    entry = _wait_entry(proxy, request_id)
    assert entry.status == "upstream_error"
    assert entry.output_tokens >= 2 and entry.cost_usd > 0  # the two pieces were paid for


def test_through_litellm_a_cut_before_any_text_reaches_the_client_is_a_clean_error(
    start_proxy: StartProxy, resetting: ResettingUpstream
) -> None:
    # LiteLLM reads ahead and fails before handing over a piece: the client has nothing yet, so the
    # retries and a clean error status are allowed, and nothing is sent twice.
    proxy = start_proxy(real_backends=True, upstream_url=f"http://127.0.0.1:{resetting.port}/v1", direct_http=False)
    body = {"model": "fast", "stream": True, "messages": [{"role": "user", "content": "say hello"}]}
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=30)
    if response.status_code == 200:  # a LiteLLM that hands over pieces first behaves as the direct backend
        assert response.text.count("Hello") == 1
    else:
        assert response.status_code == 502 and response.json()["error"]["code"] is not None
    assert _wait_entry(proxy, response.headers["x-router-request-id"]).status != "ok"


def test_a_whole_live_stream_is_recorded_ok_with_its_tokens(start_proxy: StartProxy, upstream) -> None:  # type: ignore[no-untyped-def]
    _, url = upstream
    proxy = start_proxy(real_backends=True, upstream_url=url)
    texts, errors, request_id = _stream(proxy.url)
    assert "".join(texts) and not errors
    entry = _wait_entry(proxy, request_id)
    assert (entry.status, entry.tier) == ("ok", "fast")
    assert entry.input_tokens > 0 and entry.output_tokens > 0 and entry.cost_usd > 0


def _stream(url: str) -> tuple[list[str], list[dict[str, object]], str]:
    body = {"model": "fast", "stream": True, "messages": [{"role": "user", "content": "say hello"}]}
    texts: list[str] = []
    errors: list[dict[str, object]] = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        request_id = response.headers["x-router-request-id"]
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                errors.append(event["error"])
            for choice in event.get("choices", []):
                texts.append(choice["delta"].get("content") or "")
    return texts, errors, request_id


def _wait_entry(proxy, request_id):  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        entry = proxy.entries().get(request_id)
        if entry is not None:
            return entry
        time.sleep(0.02)
    raise AssertionError(f"no ledger entry for {request_id}")
