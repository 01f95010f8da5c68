"""A client's `n`: n answers, each produced by the tier's own strategy, every sample paid for and
accounted; on pass-through `n` is forwarded as sent. Through the official openai SDK."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.server.conftest import Proxy
from tests.server.test_dropin_openai_sdk import client
from tests.server.upstream import Upstream

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 6 * 7?"}]


@pytest.mark.parametrize("model", ["fast", "router", "up-model"])
def test_a_one_call_tier_asks_its_call_for_n(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, upstream = served
    before = len(upstream.requests)
    answer = client(proxy).chat.completions.create(model=model, messages=QUESTION, n=3)
    assert [choice.index for choice in answer.choices] == [0, 1, 2]
    assert all(choice.message.content for choice in answer.choices)
    sent = upstream.requests[before:]
    assert len(sent) == 1 and sent[0]["n"] == 3  # one call, the prompt paid once
    assert answer.usage is not None and answer.usage.completion_tokens >= 3


def test_a_voting_tier_votes_n_times(served: tuple[Proxy, Upstream]) -> None:
    proxy, upstream = served
    before = len(upstream.requests)
    raw = client(proxy).chat.completions.with_raw_response.create(model="deep", messages=QUESTION, n=2)
    answer = raw.parse()
    assert len(answer.choices) == 2 and raw.headers["x-router-strategy"] == "self_consistency"
    sent = upstream.requests[before:]
    assert len(sent) >= 2 and all(body.get("n") == 3 for body in sent)  # each answer is its own 3-sample vote
    entry = proxy.entries()[raw.headers["x-router-request-id"]]
    assert entry.output_tokens == answer.usage.completion_tokens  # type: ignore[union-attr]
    assert entry.input_tokens == answer.usage.prompt_tokens  # type: ignore[union-attr]


def test_n_streams_every_choice(served: tuple[Proxy, Upstream]) -> None:
    proxy, _ = served
    texts: dict[int, str] = {}
    finished: set[int] = set()
    for chunk in client(proxy).chat.completions.create(model="fast", messages=QUESTION, n=2, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
    assert set(texts) == {0, 1} == finished and all(texts.values())


def test_n_past_the_limit_is_a_400_that_says_so(served: tuple[Proxy, Upstream]) -> None:
    proxy, _ = served
    with pytest.raises(openai.BadRequestError, match="at most 128"):
        client(proxy).chat.completions.create(model="fast", messages=QUESTION, n=129)
