"""The proxy tests' fixtures (a real proxy in a uvicorn thread, the real Redis), shared here."""

from tests.server.conftest import redis_prefix, start_proxy, upstream  # noqa: F401
