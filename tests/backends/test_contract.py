"""The contract every backend keeps, run against each of them.

fake, openai_http and litellm (the latter two against the real test upstream on 127.0.0.1) and
local (the embedded SmolLM2, loaded once per session) must return n completions that share one
call's tokens and cost as core/llm.py says, and stream text pieces then exactly one Completion.
The HTTP backends must also map upstream failures to the same errors, with the same retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from core.errors import BackendBadResponse, BackendRateLimited, BackendTimeout, BackendUnavailable
from router.backends import (
    Backend,
    Completion,
    FakeBackend,
    GenerationParams,
    LiteLLMBackend,
    LiteLLMSettings,
    LocalBackend,
    Message,
    OpenAIHTTPBackend,
    OpenAIHTTPSettings,
    TokenPrice,
    Usage,
)
from router.backends._upstream import Upstream

from .upstream_stub import OpenAIStub, Reply

# LiteLLM builds a pydantic schema on its first call, and pydantic warns about a ReadOnly TypedDict
# item there; under our warnings-are-errors setting that would surface as a connection error.
pytestmark = pytest.mark.filterwarnings("ignore:.*using the .ReadOnly. qualifier:UserWarning")

MESSAGES: list[Message] = [{"role": "user", "content": "What is 2 + 2?"}]
PRICE = TokenPrice(input_per_million=1.0, output_per_million=2.0)
KEY_ENV = "ROUTER_TEST_UPSTREAM_KEY"
HTTP_KINDS = ["openai_http", "litellm"]
FAST_RETRIES = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")


Make = Callable[..., Backend]


@pytest.fixture
def make(runner: asyncio.Runner) -> Iterator[Make]:
    """`make(kind, api_base, **settings)`: an HTTP backend with fast retries, closed after the test."""
    made: list[Backend] = []

    def build(kind: str, api_base: str, **options: object) -> Backend:
        settings: dict[str, object] = {"api_key_env": KEY_ENV, "price": PRICE, **FAST_RETRIES, **options}
        backend: Backend
        if kind == "openai_http":
            backend = OpenAIHTTPBackend(OpenAIHTTPSettings("stub-model", api_base, **settings))  # type: ignore[arg-type]
        else:
            backend = LiteLLMBackend(LiteLLMSettings("openai/stub-model", api_base, **settings))  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield build
    for backend in made:
        close = getattr(backend, "aclose", None)
        if close is not None:
            runner.run(close())


@dataclass
class Subject:
    """A backend under the contract, and its upstream when it has one (the fake and local have none)."""

    backend: Backend
    stub: OpenAIStub | None

    def script(self, reply: Reply) -> None:
        if self.stub is not None:
            self.stub.reset(reply)


@pytest.fixture(params=["fake", *HTTP_KINDS, "local"])
def subject(request: pytest.FixtureRequest, openai_stub: OpenAIStub, make: Make, runner: asyncio.Runner) -> Iterator[Subject]:
    kind: str = request.param
    if kind == "fake":
        yield Subject(FakeBackend(["a b c", "d e", "f g"], price=PRICE), None)
    elif kind == "local":
        backend = LocalBackend(request.getfixturevalue("smollm2"), price=PRICE)
        yield Subject(backend, None)
        runner.run(backend.aclose())
    else:
        yield Subject(make(kind, openai_stub.url), openai_stub)


def test_n_completions_share_one_call(subject: Subject, runner: asyncio.Runner) -> None:
    # The fake counts words (5 in the prompt; 3, 2, 2 in its answers); the stub reports 10 prompt
    # tokens and 7 completion tokens for the call, to be shared out as 3, 2, 2.
    subject.script(Reply(texts=("a b c", "d e", "f g"), prompt_tokens=10, completion_tokens=7))
    expected = {
        FakeBackend: [Usage(5, 3), Usage(0, 2), Usage(0, 2)],
        OpenAIHTTPBackend: [Usage(10, 3), Usage(0, 2), Usage(0, 2)],
        LiteLLMBackend: [Usage(10, 3), Usage(0, 2), Usage(0, 2)],
    }.get(type(subject.backend))  # a real model's counts are checked for their shape only
    params = GenerationParams(n=3, max_tokens=4, temperature=0.8)
    completions = runner.run(subject.backend.generate(MESSAGES, params))
    assert len(completions) == 3 and all(isinstance(c.text, str) for c in completions)
    usages = [c.usage for c in completions]
    if expected is not None:
        assert usages == expected
        assert [c.text for c in completions] == ["a b c", "d e", "f g"]
    # The prompt is billed once, on the first completion; each completion has its own output.
    assert usages[0].input_tokens > 0 and all(u.input_tokens == 0 for u in usages[1:])
    assert all(u.output_tokens >= 1 for u in usages)
    for completion in completions:
        assert completion.cost_usd == pytest.approx(PRICE.cost(completion.usage.input_tokens, completion.usage.output_tokens))
    assert len({c.latency_s for c in completions}) == 1  # the call's wall time, on each
    assert all(c.model for c in completions)


def test_a_stream_is_text_pieces_then_exactly_one_completion(subject: Subject, runner: asyncio.Runner) -> None:
    if not hasattr(subject.backend, "stream"):
        pytest.skip("the fake backend does not stream")
    subject.script(Reply(texts=("The answer is 42",), prompt_tokens=12, tokens_per_choice=5))
    *texts, final = runner.run(collect(subject.backend, GenerationParams(max_tokens=8)))
    assert isinstance(final, Completion)
    assert texts and all(isinstance(text, str) and text for text in texts)
    if subject.stub is not None:
        assert texts == ["The", " answer", " is", " 42"]
        assert final.usage == Usage(12, 5)
    assert "".join(texts) == final.text  # type: ignore[arg-type]
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.cost_usd == pytest.approx(PRICE.cost(final.usage.input_tokens, final.usage.output_tokens))


async def collect(backend: Backend, params: GenerationParams) -> list[object]:
    """Everything `backend.stream` yields."""
    stream = getattr(backend, "stream")
    return [piece async for piece in stream(MESSAGES, params)]


# The HTTP backends against the same upstream failures.


@pytest.fixture(params=HTTP_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_stream_without_usage_is_still_billed(kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make) -> None:
    # The estimate itself is openai_http's test; LiteLLM counts a stream without usage with its own
    # tokenizer before the backend sees it, so here only the promise is common: billed, not an error.
    openai_stub.reset(Reply(texts=("The answer is 42",), stream_usage=False))
    *texts, final = runner.run(collect(make(kind, openai_stub.url), GenerationParams()))
    assert isinstance(final, Completion) and final.text == "The answer is 42"
    assert final.usage.input_tokens >= 1 and final.usage.output_tokens >= 1
    assert final.cost_usd == pytest.approx(PRICE.cost(final.usage.input_tokens, final.usage.output_tokens))


def test_a_slow_upstream_times_out_without_retry(kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make) -> None:
    openai_stub.reset(Reply(delay_s=3.0))
    with pytest.raises(BackendTimeout, match="did not answer within 0.5 s"):
        runner.run(make(kind, openai_stub.url).generate(MESSAGES, GenerationParams(timeout_s=0.5)))
    assert len(openai_stub.requests) == 1


def test_429_waits_for_retry_after_then_succeeds(
    kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    openai_stub.reset(Reply(status=429, headers={"retry-after": "0.3"}), Reply(texts=("4",)))
    backend = make(kind, openai_stub.url, backoff_max_s=1.0)
    with caplog.at_level(logging.WARNING, logger="router.backends"):
        [completion] = runner.run(backend.generate(MESSAGES, GenerationParams()))
    assert completion.text == "4" and len(openai_stub.requests) == 2
    # The exponential wait here is at most 0.01 s, so the logged wait is the upstream's 0.3 s.
    assert "HTTP 429" in caplog.text and "retrying in 0.30 s" in caplog.text


def test_429_on_every_attempt_is_rate_limited(kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make) -> None:
    openai_stub.reset(Reply(status=429), Reply(status=429))
    with pytest.raises(BackendRateLimited, match=r"HTTP 429\) after 2 attempts"):
        runner.run(make(kind, openai_stub.url, max_attempts=2).generate(MESSAGES, GenerationParams()))
    assert len(openai_stub.requests) == 2


def test_5xx_is_retried_then_unavailable(kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make) -> None:
    openai_stub.reset(Reply(status=500), Reply(status=502), Reply(status=500))
    with pytest.raises(BackendUnavailable, match=r"HTTP 500 after 3 attempts") as caught:
        runner.run(make(kind, openai_stub.url).generate(MESSAGES, GenerationParams()))
    assert not isinstance(caught.value, BackendRateLimited)
    assert len(openai_stub.requests) == 3


def test_5xx_then_success_returns_the_answer(kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make) -> None:
    openai_stub.reset(Reply(status=503), Reply(texts=("fine",)))
    [completion] = runner.run(make(kind, openai_stub.url).generate(MESSAGES, GenerationParams()))
    assert completion.text == "fine" and len(openai_stub.requests) == 2


def test_a_4xx_refusal_is_not_retried(kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make) -> None:
    openai_stub.reset(Reply(status=401))
    with pytest.raises(BackendUnavailable, match=r"refused the request \(HTTP 401\)") as caught:
        runner.run(make(kind, openai_stub.url).generate(MESSAGES, GenerationParams()))
    assert "stub error 401" in str(caught.value)  # the upstream's own message is passed on
    assert len(openai_stub.requests) == 1


NO_USAGE = {
    "id": "x", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(raw="this is not json{"),
        Reply(json_body={"hello": "world"}),
        Reply(json_body={**NO_USAGE, "choices": []}),
        Reply(json_body=NO_USAGE),
    ],
    ids=["not-json", "wrong-shape", "no-choices", "no-usage"],
)
def test_a_bad_body_is_a_bad_response_and_not_retried(
    kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make, reply: Reply
) -> None:
    openai_stub.reset(reply)
    with pytest.raises(BackendBadResponse):
        runner.run(make(kind, openai_stub.url).generate(MESSAGES, GenerationParams()))
    assert len(openai_stub.requests) == 1


def test_an_unreachable_server_is_unavailable(kind: str, runner: asyncio.Runner, make: Make) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make(kind, f"http://127.0.0.1:{port}/v1", max_attempts=2)
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        runner.run(backend.generate(MESSAGES, GenerationParams(timeout_s=5)))


def test_a_stream_is_retried_until_it_opens(kind: str, openai_stub: OpenAIStub, runner: asyncio.Runner, make: Make) -> None:
    openai_stub.reset(Reply(status=503), Reply(texts=("ok",)))
    *texts, final = runner.run(collect(make(kind, openai_stub.url, max_attempts=2), GenerationParams()))
    assert texts == ["ok"] and isinstance(final, Completion) and len(openai_stub.requests) == 2
    openai_stub.reset(Reply(status=500), Reply(status=500))
    with pytest.raises(BackendUnavailable, match="HTTP 500 after 2 attempts"):
        runner.run(collect(make(kind, openai_stub.url, max_attempts=2), GenerationParams()))
    openai_stub.reset(Reply(status=400))
    with pytest.raises(BackendUnavailable, match=r"refused the request \(HTTP 400\)"):
        runner.run(collect(make(kind, openai_stub.url), GenerationParams()))
    assert len(openai_stub.requests) == 1


# The shared helper's wait, without waiting.


def upstream(**options: float) -> Upstream:
    settings: dict[str, float] = {"backoff_base_s": 0.5, "backoff_max_s": 8.0, **options}
    return Upstream("m", None, 3, settings["backoff_base_s"], settings["backoff_max_s"], random.Random(0))


@pytest.mark.parametrize(("attempt", "low", "high"), [(1, 0.25, 0.5), (2, 0.5, 1.0), (3, 1.0, 2.0), (6, 4.0, 8.0)])
def test_backoff_doubles_with_equal_jitter_up_to_the_cap(attempt: int, low: float, high: float) -> None:
    delays = [upstream().backoff(attempt, None) for _ in range(20)]
    assert all(low <= delay <= high for delay in delays)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [("3", 3.0, 3.0), ("60", 8.0, 8.0), ("0", 0.25, 0.5), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.25, 0.5)],
    ids=["longer-wins", "capped", "shorter-ignored", "http-date-ignored"],
)
def test_retry_after_is_honoured_up_to_the_cap(retry_after: str, low: float, high: float) -> None:
    assert low <= upstream().backoff(1, retry_after) <= high
