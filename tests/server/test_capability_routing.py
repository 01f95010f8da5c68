"""A routed request with images, audio or files goes to the nearest tier that takes them; with none,
a 400 says so. The classifier still reads the text: such content never routes a request to a cheaper
tier. What the tier answers beside text (audio, logprobs) reaches the client as the upstream sent it."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.conftest import Proxy, StartProxy
from tests.server.support import write_policy
from tests.server.upstream import Upstream

IMAGE = {
    "role": "user",
    "content": [
        {"type": "text", "text": "easy: what is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ],
}


AUDIO = {
    "role": "user",
    "content": [
        {"type": "text", "text": "easy: what is said here?"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ],
}
FILE = {
    "role": "user",
    "content": [{"type": "text", "text": "easy: summarise"}, {"type": "file", "file": {"file_id": "file-1"}}],
}


def post(url: str, messages: list[dict[str, object]], **fields: object) -> httpx.Response:
    body = {"model": "router", "messages": messages, **fields}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=20)


def deep_takes(start_proxy: StartProxy, tmp_path: Path, declared: str, upstream: str | None = None) -> Proxy:
    """A proxy whose `deep` tier (self-consistency) is declared with `declared`, e.g. "audio: true";
    its tiers are fakes, or real backends calling the test `upstream`."""
    path = write_policy(tmp_path / "router.yaml", **({"upstream": upstream} if upstream else {}))
    path.write_text(path.read_text().replace("    max_tokens: 128\n", f"    max_tokens: 128\n    {declared}\n", 1))
    return start_proxy(policy=path, real_backends=upstream is not None)


def test_images_go_to_the_nearest_vision_tier(start_proxy: StartProxy, tmp_path: Path) -> None:
    proxy = deep_takes(start_proxy, tmp_path, "vision: true")
    text_only = post(proxy.url, [{"role": "user", "content": "easy: what is 2 + 2?"}])
    assert text_only.headers["x-router-tier"] == "fast"
    with_image = post(proxy.url, [IMAGE])
    assert with_image.status_code == 200, with_image.text
    assert with_image.headers["x-router-tier"] == "deep"  # fast does not take images
    assert float(with_image.headers["x-router-difficulty"]) < 0.5  # the text's own score, unchanged


def test_images_with_no_vision_tier_are_a_400(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    response = post(proxy.url, [IMAGE])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_content" and "vision: true" in error["message"]


def test_audio_in_and_out_go_to_the_audio_tier_which_answers_with_one_call(
    start_proxy: StartProxy, tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    proxy = deep_takes(start_proxy, tmp_path, "audio: true", upstream[1])
    heard = post(proxy.url, [AUDIO])
    assert heard.status_code == 200, heard.text
    assert heard.headers["x-router-tier"] == "deep"
    spoken = post(proxy.url, [{"role": "user", "content": "easy: say hi"}],
                  modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"})
    assert spoken.status_code == 200, spoken.text
    # No vote is taken over audio: the self-consistency tier answers with one direct call, and says so.
    assert (spoken.headers["x-router-tier"], spoken.headers["x-router-strategy"]) == ("deep", "direct (fallback: audio)")
    message = spoken.json()["choices"][0]["message"]
    assert message["content"] is None
    assert message["audio"] == {"id": "audio_1", "data": "UklGRg==", "expires_at": 0, "transcript": "reply: easy: say hi"}


def test_files_go_to_the_files_tier_and_a_missing_capability_is_named(start_proxy: StartProxy, tmp_path: Path) -> None:
    proxy = deep_takes(start_proxy, tmp_path, "files: true")
    read = post(proxy.url, [FILE])
    assert (read.status_code, read.headers["x-router-tier"]) == (200, "deep")
    both = post(proxy.url, [FILE, AUDIO])  # deep takes files but not audio, and no tier takes both
    assert both.status_code == 400
    error = both.json()["error"]
    assert (error["param"], error["code"]) == ("messages", "unsupported_content")
    assert "`audio: true` and `files: true`" in error["message"]
    # A forced tier is checked the same way.
    forced = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "fast", "messages": [FILE]}, timeout=20)
    assert forced.status_code == 400 and "`files: true`" in forced.json()["error"]["message"]


def test_logprobs_reach_the_client(start_proxy: StartProxy, upstream: tuple[Upstream, str]) -> None:
    proxy = start_proxy(real_backends=True, upstream_url=upstream[1])
    response = post(proxy.url, [{"role": "user", "content": "easy: two words"}], logprobs=True, top_logprobs=2)
    assert response.status_code == 200, response.text
    tokens = response.json()["choices"][0]["logprobs"]["content"]
    assert [token["token"] for token in tokens] == ["reply:", "easy:", "two", "words"]


def test_audio_asked_by_modalities_alone_is_audio_output(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    response = post(proxy.url, [{"role": "user", "content": "easy: say hi"}], modalities=["audio"])
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("modalities", "unsupported_content")
    assert "`audio: true`" in error["message"]
