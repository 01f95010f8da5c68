"""Drop-in headers and endpoints: x-request-id, api-key, GET /v1/models/{id}, and the endpoints not served."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.server.conftest import Proxy, StartProxy

HI = [{"role": "user", "content": "hi"}]
KEYS = """
server:
  api_keys:
    - {name: team, key_env: DROPIN_TEST_KEY}
  passthrough:
    models: ["up-*"]
"""


@pytest.fixture(scope="module")
def proxy(start_module_proxy: StartProxy) -> Proxy:
    return start_module_proxy()


def test_client_request_id_is_echoed_and_recorded_beside_ours(proxy: Proxy) -> None:
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        mine = [
            http.post("/chat/completions", json={"model": "fast", "messages": HI}, headers={"x-request-id": "trace-42.a"})
            for _ in range(3)  # a client retrying with the same id: three paid requests, three entries
        ]
        odd = http.post("/chat/completions", json={"model": "fast", "messages": HI}, headers={"x-request-id": "no spaces!"})
    ours = [response.headers["x-router-request-id"] for response in mine]
    assert all(response.headers["x-request-id"] == "trace-42.a" for response in mine)
    assert len(set(ours)) == 3 and all(len(rid) == 24 for rid in ours)
    entries = proxy.entries()
    assert all(entries[rid].extra["client_request_id"] == "trace-42.a" for rid in ours)
    assert "x-request-id" not in odd.headers  # not a plausible id: not echoed, not recorded


def test_api_key_header_is_accepted_like_bearer(start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPIN_TEST_KEY", "sk-dropin")
    keyed = start_proxy(extra_yaml=KEYS)
    body = {"model": "fast", "messages": HI}
    with httpx.Client(base_url=keyed.api, timeout=10) as http:
        assert http.post("/chat/completions", json=body, headers={"api-key": "sk-dropin"}).status_code == 200
        assert http.post("/chat/completions", json=body, headers={"authorization": "Bearer sk-dropin"}).status_code == 200
        assert http.post("/chat/completions", json=body, headers={"api-key": "sk-wrong"}).status_code == 401
        missing = http.post("/chat/completions", json=body)
    assert missing.status_code == 401 and "api-key" in missing.json()["error"]["message"]


@pytest.mark.parametrize("name", ["router", "auto", "fast", "deep"])
def test_every_routable_name_can_be_retrieved(proxy: Proxy, name: str) -> None:
    with openai.OpenAI(base_url=proxy.api, api_key="unused", max_retries=0) as api:
        model = api.models.retrieve(name)
    assert model.id == name
    assert model.owned_by.startswith("router")


def test_unknown_model_retrieve_is_404(proxy: Proxy) -> None:
    with openai.OpenAI(base_url=proxy.api, api_key="unused", max_retries=0) as api, pytest.raises(openai.NotFoundError) as caught:
        api.models.retrieve("gpt-9")
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize("path", ["/embeddings", "/completions"])
def test_endpoints_not_served_say_so(proxy: Proxy, path: str) -> None:
    response = httpx.post(f"{proxy.api}{path}", json={"model": "fast", "input": "x"}, timeout=10)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and "not served" in error["message"]
