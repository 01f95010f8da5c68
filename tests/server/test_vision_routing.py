"""A routed request with images goes to the nearest tier that takes them; with none, a 400 says so.
The classifier still reads the text: images never route a request to a cheaper tier."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.conftest import StartProxy
from tests.server.support import write_policy

IMAGE = {
    "role": "user",
    "content": [
        {"type": "text", "text": "easy: what is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ],
}


def post(url: str, messages: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={"model": "router", "messages": messages}, timeout=20)


def test_images_go_to_the_nearest_vision_tier(start_proxy: StartProxy, tmp_path: Path) -> None:
    path = write_policy(tmp_path / "router.yaml")
    path.write_text(path.read_text().replace("    max_tokens: 128\n", "    max_tokens: 128\n    vision: true\n", 1))
    proxy = start_proxy(policy=path)
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
