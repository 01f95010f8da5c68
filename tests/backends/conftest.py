"""Fixtures for backend tests: a real HTTP upstream on 127.0.0.1 (uvicorn in a thread), one loop per module, the embedded model."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from router.backends import LocalModel, LocalModelLoader, LocalModelSpec

from .upstream_stub import OpenAIStub


@pytest.fixture(scope="module")
def openai_stub() -> Iterator[OpenAIStub]:
    """A real uvicorn server on a free 127.0.0.1 port, shared by a test module."""
    stub = OpenAIStub()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(stub.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the stub upstream did not start within 10 s")
        time.sleep(0.02)
    stub.root = f"http://127.0.0.1:{port}"
    stub.url = f"{stub.root}/v1"
    yield stub
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop per module: LiteLLM caches HTTP clients per loop, so tests share one."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner
        from router.backends.litellm_backend import close_shared_clients

        loop_runner.run(close_shared_clients())


@pytest.fixture(scope="session")
def loader() -> LocalModelLoader:
    return LocalModelLoader()


@pytest.fixture(scope="session")
def smollm2(loader: LocalModelLoader) -> Iterator[LocalModel]:
    """The embedded model, loaded once per session; one torch thread keeps a shared CPU responsive."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield loader.load(LocalModelSpec("smollm2"))
    torch.set_num_threads(threads)
