"""POST /v1/chat/completions: OpenAI's endpoint, plain or streamed, routed.

Headers on every answer: x-router-request-id, -tier (the tier that answered), -difficulty
("none" when the request was not classified), -strategy, -cost-usd, -policy-version. On a
stream that comes straight from the backend the cost header is the decision's estimate (the
answer is not written yet); the usage chunk carries the real token counts.

The route only speaks HTTP: the pipeline plans and runs, and one `RequestAccount` per request
accounts it exactly once, whichever way it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from core.errors import BackendError
from core.llm import Completion
from router.execution import ExecutionResult, LiveStream
from router.server.dependencies import PolicyDep, PrincipalDep, RuntimeDep
from router.server.errors import describe
from router.server.openapi_chat import CHAT_REQUEST_BODY
from router.server.pipeline import CLIENT_CLOSED, ChatPipeline, ChatPlan, Disconnected, RequestAccount, cancel_on_disconnect
from router.server.requests import parse_chat_request, read_json
from router.server.responses import DONE, ChunkWriter, completion_body, error_event, pieces
from router.server.sessions import ROUTER_SESSION_HEADER
from router.server.tracing import with_trace_context

router = APIRouter()

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _headers(plan: ChatPlan, tier: str, strategy: str, cost_usd: float) -> dict[str, str]:
    difficulty = plan.difficulty
    return {
        "x-router-tier": tier,
        "x-router-difficulty": "none" if difficulty is None else f"{difficulty:.4f}",
        "x-router-strategy": strategy,
        "x-router-cost-usd": f"{cost_usd:.8f}",
        "x-router-policy-version": plan.policy.version,
        "x-router-rule": plan.decision.rule,
        **({ROUTER_SESSION_HEADER: plan.session.id} if plan.session is not None else {}),
    }


def _model(result: ExecutionResult, plan: ChatPlan) -> str:
    models = result.models
    return models[-1] if models else plan.chat.model


@router.post(
    "/v1/chat/completions",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": CHAT_REQUEST_BODY}}}},
)
async def chat_completions(request: Request, runtime: RuntimeDep, policy: PolicyDep, principal: PrincipalDep) -> Response:
    """Route one chat completion."""
    pipeline: ChatPipeline = request.app.state.pipeline
    request_id: str = request.state.request_id
    runtime.require_ready()
    body = await read_json(request, runtime.settings.max_body_bytes)
    chat = parse_chat_request(
        body, max_tokens_limit=runtime.settings.max_tokens_limit, max_messages=runtime.settings.max_messages
    )
    chat = with_trace_context(chat, request.headers)
    plan = await pipeline.plan(request_id, chat, principal, policy, request.headers)
    plan.client_request_id = request.state.client_request_id
    request.state.accounted = True  # from here the account counts it; before, the error handler does
    account = RequestAccount(pipeline, plan)
    if chat.stream:
        return await _stream(request, pipeline, account)
    async with account:
        outcome = await cancel_on_disconnect(request, pipeline.execute(plan, stream=False))
        if isinstance(outcome, Disconnected):
            await account.settle(outcome, "client_disconnected", CLIENT_CLOSED)
            return Response(status_code=CLIENT_CLOSED)
        assert isinstance(outcome, ExecutionResult)
        await account.settle(outcome, "ok", 200)
    fingerprint = f"router-{plan.policy.version}"
    return Response(
        completion_body(
            f"chatcmpl-{request_id}", _model(outcome, plan),
            outcome.choices,
            outcome.input_tokens, outcome.output_tokens, fingerprint,
        ),
        media_type="application/json",
        headers=_headers(plan, outcome.tier, outcome.strategy, outcome.cost_usd),
    )


async def _stream(request: Request, pipeline: ChatPipeline, account: RequestAccount) -> Response:
    plan = account.plan
    async with account:
        outcome = await cancel_on_disconnect(request, pipeline.execute(plan, stream=True))
        if isinstance(outcome, Disconnected):
            await account.settle(outcome, "client_disconnected", CLIENT_CLOSED)
            return Response(status_code=CLIENT_CLOSED)
        if isinstance(outcome, ExecutionResult):
            # Sampling strategies (or a backend that cannot stream): the vote is done, stream the winner.
            await account.settle(outcome, "ok", 200)
        else:
            account.hand_over()  # to the relay, which settles when the stream ends however it ends
    fingerprint = f"router-{plan.policy.version}"
    if isinstance(outcome, ExecutionResult):
        writer = ChunkWriter(f"chatcmpl-{plan.request_id}", _model(outcome, plan), fingerprint)
        return StreamingResponse(
            _replay(writer, outcome, plan.chat.include_usage),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **_headers(plan, outcome.tier, outcome.strategy, outcome.cost_usd)},
        )
    relay = _Relay(account, outcome, ChunkWriter(f"chatcmpl-{plan.request_id}", outcome.model, fingerprint))
    return _AccountedStream(
        relay,
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **_headers(plan, outcome.tier, outcome.strategy, plan.decision.expected_cost_usd)},
    )


async def _replay(writer: ChunkWriter, result: ExecutionResult, include_usage: bool) -> AsyncIterator[bytes]:
    for index, choice in enumerate(result.choices):
        yield writer.role(index)
        for piece in pieces(choice.text):
            yield writer.text(piece, index)
        if choice.tool_calls:
            yield writer.tool_calls(choice.tool_calls, index)
        relayed = writer.relayed(choice.relayed, index)
        if relayed is not None:
            yield relayed
        yield writer.finish(choice.finish_reason, index)
    if include_usage:
        yield writer.usage(result.input_tokens, result.output_tokens)
    yield DONE


class _Relay:
    """Forwards a backend's stream as SSE; `close` ends the upstream and accounts what it cost."""

    def __init__(self, account: RequestAccount, live: LiveStream, writer: ChunkWriter) -> None:
        self.account, self.live, self.writer = account, live, writer
        self.final: Completion | None = None
        self.cut: BackendError | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        writer, live = self.writer, self.live
        yield writer.role()
        item = live.first
        try:
            while True:
                if isinstance(item, Completion):
                    self.final = item
                    break
                yield writer.text(item)
                try:
                    item = await anext(live.rest)
                except StopAsyncIteration:
                    break
        except BackendError as error:
            # Too late for a status code (and for a fallback: the client has text): say it in the stream.
            self.cut = error
            info = describe(error)
            yield error_event(info.message, info.type, info.code)
            await self.close(info.code or "upstream_error", info.status)
            return
        if self.final is not None and self.final.tool_calls:
            yield writer.tool_calls(self.final.tool_calls)
        relayed = writer.relayed(self.final.relayed) if self.final is not None else None
        if relayed is not None:
            yield relayed
        yield writer.finish(self.final.finish_reason if self.final is not None else "stop")
        if self.account.plan.chat.include_usage and self.final is not None:
            yield writer.usage(self.final.usage.input_tokens, self.final.usage.output_tokens)
        yield DONE
        await self.close("ok", 200)

    async def close(self, status: str = "client_disconnected", http_status: int = CLIENT_CLOSED) -> None:
        """Close the upstream and account the stream once (a disconnect lands here with the defaults)."""
        with anyio.CancelScope(shield=True):
            await self.live.aclose()
            await self.account.settle(self.live.result(self.final, self.cut), status, http_status, background=True)


class _AccountedStream(StreamingResponse):
    """A streaming response that always closes its relay, even when the body never started."""

    def __init__(self, relay: _Relay, **kwargs: Any) -> None:
        super().__init__(relay, **kwargs)
        self._relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._relay.close()
