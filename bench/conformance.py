"""Conformance: how many chat requests valid by OpenAI's published schema the proxy serves.

    python bench/conformance.py [--n 500] [--seed S] [--tiers upstream|fake] [--takes vision,audio,files] [--show 3]
                                [--save FILE | --load FILE]

Generates `--n` request bodies from OpenAI's CreateChatCompletionRequest
(tests/data/openai_chat_request.schema.json, made by bench/openai_spec.py) restricted to its
documented keys, with `model: "router"` and no streaming; each is checked valid by the published
schema before it is sent. They go, one at a time, to a real proxy (uvicorn, on the test policy:
tier `fast` direct, tier `deep` self-consistency n=3, the keyword classifier) whose tiers call
the test upstream (tests/server/upstream.py) over HTTP (`--tiers upstream`, the default) or
are fake backends in the process (`--tiers fake`); `--takes` declares both tiers able to take
images, audio (parts and output) and/or files (router.yaml's `vision`, `audio`, `files`; by
default none, and such a request asks for a capability no tier has: a 400). Each answer is counted as:

- served: 200;
- named_400: 400 whose error names the field or capability (`param` set);
- unnamed_400: any other 400;
- 5xx: any status of 500 or more (the target is none);
- other: anything else (404, 422, 429...).

Every error body is also checked for OpenAI's shape, `{"error": {"message", "type", "param",
"code"}}`. Prints the refusals by parameter, a few examples of each kind, and the shares last.
Issue 14's target: served >= 90%, no 5xx, every refusal a named 400.

The same seed gives the same requests only on the same code: Hypothesis also draws constants it
finds in the project's modules. To compare two versions of the proxy, `--save` the requests once
and `--load` them for the other.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.openai_spec import documented_only, load_schema  # noqa: E402
from tests.server.upstream import read_body  # noqa: E402

JSON = Any
Strategy = st.SearchStrategy[JSON]
# Sizes kept small: a conformance request is about which fields and shapes are sent, not their bulk.
MAX_STRING = 24
MAX_ITEMS = 3
IMAGE_URLS = ("https://example.com/cat.png", "data:image/png;base64,iVBORw0KGgo=")
BATCH = 100  # examples per Hypothesis run
KINDS = ("served", "named_400", "unnamed_400", "5xx", "other")

_scalars: Strategy = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8)
ANY_JSON: Strategy = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def strategy_for(schema: JSON) -> Strategy:
    """Values for the JSON Schema subset OpenAI's chat request uses (`$ref`-free, see openai_spec.inline).

    Candidates, not guarantees: `oneOf` exclusivity and `allOf` beyond the first part are left to
    the caller's validation (`valid_requests` filters with the real validator).
    """
    if schema is True or schema == {}:
        return ANY_JSON
    if schema is False:
        return st.nothing()
    assert isinstance(schema, dict), schema
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([strategy_for(branch) for branch in schema[key]])
    if "allOf" in schema:
        first, *rest = schema["allOf"]
        validators = [jsonschema.Draft202012Validator(part) for part in rest]
        return strategy_for(first).filter(lambda value: all(v.is_valid(value) for v in validators))
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([strategy_for({**schema, "type": one}) for one in kind])
    if kind is None:
        kind = "object" if "properties" in schema else None
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.floats(low, high, allow_nan=False, allow_infinity=False) | st.integers(
            None if low is None else math.ceil(low), None if high is None else math.floor(high)
        )
    if kind == "string":
        text = st.text(min_size=schema.get("minLength", 0), max_size=max(MAX_STRING, schema.get("minLength", 0)))
        return st.sampled_from(IMAGE_URLS) | text if schema.get("format") == "uri" else text
    if kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + MAX_ITEMS), low + MAX_ITEMS)
        return st.lists(strategy_for(schema.get("items", True)), min_size=low, max_size=high)
    if kind == "object":
        return _object(schema)
    return ANY_JSON


def _object(schema: Mapping[str, JSON]) -> Strategy:
    properties: Mapping[str, JSON] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fixed = st.fixed_dictionaries(
        {name: strategy_for(sub) for name, sub in properties.items() if name in required},
        optional={name: strategy_for(sub) for name, sub in properties.items() if name not in required},
    )
    extra = schema.get("additionalProperties", True)
    if extra is False:
        return fixed
    names = st.text(min_size=1, max_size=12).filter(lambda name: name not in properties)
    more = st.dictionaries(names, strategy_for(extra), max_size=MAX_ITEMS)
    return st.tuples(fixed, more).map(lambda pair: {**pair[1], **pair[0]})


def draw(strategy: Strategy, count: int, seed_value: int) -> list[JSON]:
    """`count` values from `strategy`, the same for the same seed (Hypothesis' generate phase only)."""
    values: list[JSON] = []
    attempt = 0
    while len(values) < count:
        # In runs of at most BATCH: Hypothesis slows down as one run grows (it steers away from
        # what it drew before), and may stop short of max_examples (values filtered out).
        values += _draw_once(strategy, min(BATCH, count - len(values)), seed_value * 1_000 + attempt)
        attempt += 1
    return values[:count]


def _draw_once(strategy: Strategy, count: int, seed_value: int) -> list[JSON]:
    values: list[JSON] = []

    @seed(seed_value)
    @settings(
        max_examples=count, phases=[Phase.generate], database=None, deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: JSON) -> None:
        values.append(value)

    collect()
    return values


def valid_requests(count: int, seed_value: int, schema: Mapping[str, JSON] | None = None) -> list[dict[str, JSON]]:
    """`count` request bodies valid by OpenAI's published schema, documented keys only, model "router"."""
    published = dict(schema) if schema is not None else load_schema()
    validator = jsonschema.Draft202012Validator(published)
    strategy = strategy_for(documented_only(published)).filter(validator.is_valid)
    return draw(strategy, count, seed_value)


def shape_problem(status: int, content: bytes) -> str | None:
    """Why an error answer is not in OpenAI's shape, or None when it is (or the answer is no error)."""
    if status < 400:
        return None
    try:
        body = json.loads(content)
    except ValueError:
        return f"not JSON: {content[:120]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(error, dict):
        return f"not {{'error': {{...}}}}: {content[:200]!r}"
    missing = {"message", "type", "param", "code"} - set(error)
    if missing:
        return f"error lacks {sorted(missing)}: {content[:200]!r}"
    if not isinstance(error["message"], str) or not error["message"] or not isinstance(error["type"], str):
        return f"message/type not strings: {content[:200]!r}"
    if not all(error[key] is None or isinstance(error[key], str) for key in ("param", "code")):
        return f"param/code neither string nor null: {content[:200]!r}"
    return None


@dataclass
class Outcome:
    """One request's answer."""

    body: JSON
    status: int
    content: bytes

    @property
    def error(self) -> dict[str, JSON]:
        try:
            parsed = json.loads(self.content)
        except ValueError:
            return {}
        error = parsed.get("error") if isinstance(parsed, dict) else None
        return error if isinstance(error, dict) else {}

    @property
    def kind(self) -> str:
        if self.status == 200:
            return "served"
        if self.status >= 500:
            return "5xx"
        if self.status == 400:
            return "named_400" if self.error.get("param") else "unnamed_400"
        return "other"


@dataclass
class Tally:
    """Outcomes counted by kind, refusal reason and shape defects."""

    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def by_kind(self) -> dict[str, list[Outcome]]:
        kinds: dict[str, list[Outcome]] = {kind: [] for kind in KINDS}
        for outcome in self.outcomes:
            kinds[outcome.kind].append(outcome)
        return kinds

    def shares(self) -> dict[str, float]:
        total = len(self.outcomes) or 1
        return {kind: len(items) / total for kind, items in self.by_kind().items()}

    def reasons(self) -> collections.Counter[str]:
        """Refusals by the parameter they name (array indices folded) and code."""
        return collections.Counter(self._reason(outcome) for outcome in self.outcomes if outcome.status != 200)

    def example_messages(self) -> dict[str, str]:
        """The first error message seen for each refusal reason."""
        messages: dict[str, str] = {}
        for outcome in self.outcomes:
            if outcome.status != 200:
                messages.setdefault(self._reason(outcome), str(outcome.error.get("message")))
        return messages

    @staticmethod
    def _reason(outcome: Outcome) -> str:
        return f"{outcome.status} {_fold(str(outcome.error.get('param')))} ({outcome.error.get('code')})"

    def shape_defects(self) -> list[tuple[Outcome, str]]:
        found = ((outcome, shape_problem(outcome.status, outcome.content)) for outcome in self.outcomes)
        return [(outcome, problem) for outcome, problem in found if problem is not None]


def _fold(param: str) -> str:
    return re.sub(r"\[\d+\]", "[]", param)


def send_all(
    base_url: str, bodies: Sequence[JSON], *, headers: Mapping[str, str] | None = None, timeout_s: float = 30,
    path: str = "/v1/chat/completions", on_outcome: Callable[[Outcome], None] | None = None,
) -> Tally:
    """POST each body as JSON, one at a time; a request that takes over `timeout_s` raises (a hang is a defect)."""
    tally = Tally()
    with httpx.Client(base_url=base_url, timeout=timeout_s, headers=dict(headers or {})) as client:
        for body in bodies:
            response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
            outcome = Outcome(body, response.status_code, response.content)
            tally.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        # One more request, served by the proxy's event loop after it has logged any traceback of
        # the last one (see tests/server/test_fuzz.py, settle).
        client.get("/livez")
    return tally


class TolerantUpstream:
    """The test upstream, answering plain text where its request handling has no case for a shape.

    tests/server/upstream.py answers the shapes its tests use; an OpenAI-valid body it has no case
    for (a custom tool, an allowed_tools choice) would crash it, and the proxy would rightly answer
    502: that is the double's limit, not the proxy's, so here such a request gets a plain answer.
    `fallbacks` counts them.
    """

    def __init__(self) -> None:
        from tests.server.upstream import Upstream

        self.inner = Upstream()
        self.fallbacks = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        raw = await read_body(receive)
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.inner(scope, _body_once(raw), watch)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError):
            if started:
                raise
            self.fallbacks += 1
            body = json.loads(raw or b"{}")
            stripped = {key: body[key] for key in ("model", "messages") if key in body}
            await self.inner(scope, _body_once(json.dumps(stripped).encode()), send)


def _body_once(body: bytes) -> Receive:
    """An ASGI `receive` that hands over `body` once, then says the client has gone."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


@contextlib.contextmanager
def running_proxy(tiers: str, *, takes: Sequence[str] = ()) -> Iterator[tuple[str, TolerantUpstream | None]]:
    """A proxy on the test policy (both tiers declared with the capabilities `takes`); its URL and (for `upstream`) its upstream."""
    from tests.server.conftest import proxy_starter
    from tests.server.support import ServerThread, write_policy

    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conformance-")))
        start = proxy_starter(directory, stack)
        upstream = TolerantUpstream() if tiers == "upstream" else None
        url = f"{stack.enter_context(ServerThread(upstream)).url}/v1" if upstream is not None else "http://127.0.0.1:9/v1"
        policy = write_policy(directory / "router.yaml", upstream=url)
        declared = "".join(f"    {capability}: true\n" for capability in takes)
        policy.write_text(policy.read_text().replace("    backend: litellm\n", f"    backend: litellm\n{declared}"))
        yield start(policy=policy, real_backends=upstream is not None, upstream_url=url).url, upstream


def _example(outcome: Outcome) -> str:
    body = json.dumps(outcome.body, ensure_ascii=True)
    return f"    {outcome.status} {outcome.content[:240]!r}\n      body: {body[:400]}"


def report(tally: Tally, show: int, upstream: TolerantUpstream | None) -> None:
    """Print refusal reasons, examples, shape defects, and the shares last."""
    print("refusals by parameter (status param (code)):")
    messages = tally.example_messages()
    for reason, count in tally.reasons().most_common(25):
        print(f"  {count:5d}  {reason}: {messages[reason][:150]}")
    for kind, items in tally.by_kind().items():
        if kind != "served" and items:
            print(f"{kind}: {len(items)}; examples:")
            for outcome in items[:show]:
                print(_example(outcome))
    defects = tally.shape_defects()
    print(f"errors not in OpenAI's shape: {len(defects)}")
    for outcome, problem in defects[:show]:
        print(f"  {problem}\n{_example(outcome)}")
    if upstream is not None:
        print(f"test-upstream plain fallbacks (shapes the double has no case for): {upstream.fallbacks}")
    shares = tally.shares()
    print(
        f"n={len(tally.outcomes)} " + " ".join(f"{kind}={shares[kind]:.1%}" for kind in KINDS)
        + f" shape_defects={len(defects)}"
    )


def _capabilities(value: str) -> tuple[str, ...]:
    from policies.schema import CAPABILITIES

    chosen = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in chosen if name not in CAPABILITIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown capability {unknown[0]!r}; choose from {', '.join(CAPABILITIES)}")
    return chosen


def main() -> None:
    """Generate, send, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="number of requests")
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument("--tiers", choices=("upstream", "fake"), default="upstream", help="what the tiers call")
    parser.add_argument(
        "--takes", type=_capabilities, default=(),
        help="comma-separated capabilities both tiers are declared with: vision, audio, files (default: none)",
    )
    parser.add_argument("--show", type=int, default=3, help="examples printed per kind")
    parser.add_argument("--save", type=Path, help="write the generated bodies here (JSON lines) before sending")
    parser.add_argument("--load", type=Path, help="send the bodies in this JSON-lines file instead of generating")
    args = parser.parse_args()
    if args.load is not None:
        bodies = [json.loads(line) for line in args.load.read_text().splitlines() if line.strip()]
    else:
        bodies = valid_requests(args.n, args.seed)
    if args.save is not None:
        args.save.write_text("".join(json.dumps(body) + "\n" for body in bodies))
    with running_proxy(args.tiers, takes=args.takes) as (url, upstream):
        tally = send_all(url, bodies)
    report(tally, args.show, upstream)


if __name__ == "__main__":
    main()
