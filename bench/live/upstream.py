"""An OpenAI-compatible upstream that replays recorded routing outcomes (outcomes.jsonl).

Models, chosen by the request's `model` (any `provider/` prefix dropped):

- `weak`, `strong` (any tier named in the rows' outcomes): answer the prompt right or wrong
  exactly as the row records for that tier: the row's reference answer, or a wrong one;
- `judge`: reads the judge prompt of router.live.judge (question and candidate answer), and
  grades the candidate against the row's reference, ending with `VERDICT: correct|incorrect`.

The rows have no reference answers, only whether each model was right, so the reference is made
up deterministically from the row id: a letter A-D for multiple-choice prompts, a number otherwise.
Prompts not in the rows get `I don't know.` (and the judge says incorrect). Usage counts words.

Run as a process: `python -m bench.live.upstream --data outcomes.jsonl --port 8100`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from router.live.judge import detect_answer_type
from strategies.extraction import extract_answer
from tests.server.upstream import read_body

LETTERS = "ABCD"
_QUESTION_RE = re.compile(r"### Question\n(?P<q>.*)\n\n### Candidate answer\n(?P<a>.*)\n\n### Your verdict", re.DOTALL)


def reference(row_id: str, prompt: str) -> tuple[str, str]:
    """(right answer, a wrong one) for a row, as extracted answers (a letter or a number)."""
    seed = int(hashlib.sha1(row_id.encode()).hexdigest()[:8], 16)
    if detect_answer_type(prompt, "") == "choice":
        right = LETTERS[seed % 4]
        return right, LETTERS[(seed + 1 + seed // 4 % 3) % 4]
    right_number = 10 + seed % 990
    return str(right_number), str(right_number + 1 + seed % 7)


def answer_text(answer: str, kind: str) -> str:
    """A model's answer in the shape the extractors read."""
    return f"The answer is ({answer})." if kind == "choice" else f"Working it out step by step.\n#### {answer}"


class ReplayUpstream:
    """The ASGI app. `calls` counts requests per model."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.rows: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            self.rows[str(row["prompt"]).strip()] = row
        self.calls: dict[str, int] = {}
        self.judge_delay_s = 0.0  # a slow judge, to catch a worker mid-job

    def answer(self, model: str, prompt: str) -> str:
        row = self.rows.get(prompt.strip())
        if row is None or model not in row["outcomes"]:
            return "I don't know."
        right, wrong = reference(str(row["id"]), str(row["prompt"]))
        kind = "choice" if right in LETTERS else "number"
        return answer_text(right if row["outcomes"][model]["correct"] else wrong, kind)

    def judge(self, prompt: str) -> str:
        match = _QUESTION_RE.search(prompt)
        if match is None:
            return "I cannot find the question. VERDICT: incorrect"
        row = self.rows.get(match.group("q").strip())
        if row is None:
            return "Unknown question. VERDICT: incorrect"
        right, _ = reference(str(row["id"]), str(row["prompt"]))
        kind = "choice" if right in LETTERS else "number"
        given = extract_answer(match.group("a"), kind)  # type: ignore[arg-type]
        return f"The reference is {right}; the candidate says {given}.\nVERDICT: {'correct' if given == right else 'incorrect'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        body = json.loads(raw or b"{}")
        model = str(body.get("model", "")).rsplit("/", 1)[-1]
        self.calls[model] = self.calls.get(model, 0) + 1
        messages = body.get("messages", [])
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if model == "judge" and self.judge_delay_s:
            await asyncio.sleep(self.judge_delay_s)
        text = self.judge(user) if model == "judge" else self.answer(model, user)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                 "total_tokens": prompt_tokens + len(text.split())}
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if body.get("stream"):
            chunks: list[dict[str, Any]] = [
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": usage},
            ]
            payload = b"".join(
                b"data: " + json.dumps({"id": "replay", "object": "chat.completion.chunk", "model": model, **c}).encode()
                + b"\n\n" for c in chunks
            ) + b"data: [DONE]\n\n"
            content_type = b"text/event-stream"
        else:
            payload = json.dumps({"id": "replay", "object": "chat.completion", "created": 0, "model": model,
                                  "choices": [choice], "usage": usage}).encode()
            content_type = b"application/json"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def load_rows(path: str) -> list[dict[str, Any]]:
    """The rows of an outcomes JSONL file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--judge-delay", type=float, default=0.0, help="Seconds the judge takes per answer.")
    args = parser.parse_args()
    app = ReplayUpstream(load_rows(args.data))
    app.judge_delay_s = args.judge_delay
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
