"""POST /v1/chat/completions: OpenAI's endpoint, plain or streamed, routed.

Headers on every answer: x-router-request-id, -tier (the tier that answered), -difficulty
("none" when the request was not classified), -strategy, -cost-usd, -policy-version. On a
stream that comes straight from the backend the cost header is the decision's estimate (the
answer is not written yet); the usage chunk carries the real token counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import Response, StreamingResponse

from core.llm import Completion
from core.errors import BackendError, RouterError
from router.execution import ExecutionResult, LiveStream
from router.server.errors import describe
from router.server.pipeline import ChatPipeline, Disconnected, Plan, cancel_on_disconnect
from router.server.requests import parse_chat_request, read_json
from router.server.responses import DONE, ChunkWriter, completion_body, error_event, pieces
from router.server.runtime import Runtime
from strategies import CallRecord

router = APIRouter()

CLIENT_CLOSED = 499  # nginx's code for "client closed request"; nobody reads it, metrics do
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _headers(plan: Plan, tier: str, strategy: str, cost_usd: float) -> dict[str, str]:
    difficulty = plan.difficulty
    return {
        "x-router-tier": tier,
        "x-router-difficulty": "none" if difficulty is None else f"{difficulty:.4f}",
        "x-router-strategy": strategy,
        "x-router-cost-usd": f"{cost_usd:.8f}",
        "x-router-policy-version": plan.policy.version,
    }


def _model(result: ExecutionResult, plan: Plan) -> str:
    models = result.models
    return models[-1] if models else plan.chat.model


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    """Route one chat completion."""
    runtime: Runtime = request.app.state.runtime
    pipeline: ChatPipeline = request.app.state.pipeline
    request_id: str = request.state.request_id
    plan: Plan | None = None
    try:
        runtime.require_ready()
        policy = runtime.store.policy
        principal = await runtime.auth.authenticate(request.headers.get("authorization"), policy.config.server)
        body = await read_json(request, runtime.settings.max_body_bytes)
        chat = parse_chat_request(
            body, max_tokens_limit=runtime.settings.max_tokens_limit, max_messages=runtime.settings.max_messages
        )
        plan = await pipeline.plan(request_id, chat, principal)
        if chat.stream:
            return await _stream(request, pipeline, plan)
        outcome = await cancel_on_disconnect(request, pipeline.run(plan))
    except (RouterError, RedisError) as error:
        await pipeline.fail(plan, error)  # counted here; answered by the one error handler
        raise
    if isinstance(outcome, Disconnected):
        await pipeline.finish(plan, None, "client_disconnected", CLIENT_CLOSED)
        return Response(status_code=CLIENT_CLOSED)
    await pipeline.finish(plan, outcome, "ok", 200)
    fingerprint = f"router-{plan.policy.version}"
    return Response(
        completion_body(
            f"chatcmpl-{request_id}", _model(outcome, plan), outcome.text, outcome.finish_reason,
            outcome.input_tokens, outcome.output_tokens, fingerprint,
        ),
        media_type="application/json",
        headers=_headers(plan, outcome.tier, outcome.strategy, outcome.cost_usd),
    )


async def _stream(request: Request, pipeline: ChatPipeline, plan: Plan) -> Response:
    outcome = await cancel_on_disconnect(request, pipeline.open_stream(plan))
    if isinstance(outcome, Disconnected):
        await pipeline.finish(plan, None, "client_disconnected", CLIENT_CLOSED)
        return Response(status_code=CLIENT_CLOSED)
    fingerprint = f"router-{plan.policy.version}"
    if isinstance(outcome, ExecutionResult):
        # Sampling strategies (or a backend that cannot stream): the vote is done, stream the winner.
        await pipeline.finish(plan, outcome, "ok", 200)
        writer = ChunkWriter(f"chatcmpl-{plan.request_id}", _model(outcome, plan), fingerprint)
        return StreamingResponse(
            _replay(writer, outcome, plan.chat.include_usage),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **_headers(plan, outcome.tier, outcome.strategy, outcome.cost_usd)},
        )
    writer = ChunkWriter(f"chatcmpl-{plan.request_id}", outcome.model, fingerprint)
    return StreamingResponse(
        _relay(writer, outcome, plan, pipeline),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **_headers(plan, outcome.tier, outcome.strategy, plan.expected_cost_usd)},
    )


async def _replay(writer: ChunkWriter, result: ExecutionResult, include_usage: bool) -> AsyncIterator[bytes]:
    yield writer.role()
    for piece in pieces(result.text):
        yield writer.text(piece)
    yield writer.finish(result.finish_reason)
    if include_usage:
        yield writer.usage(result.input_tokens, result.output_tokens)
    yield DONE


async def _relay(writer: ChunkWriter, live: LiveStream, plan: Plan, pipeline: ChatPipeline) -> AsyncIterator[bytes]:
    """Forward a backend's stream; a disconnect cancels this generator, which closes the upstream."""
    final: Completion | None = None
    status, http_status = "client_disconnected", CLIENT_CLOSED
    try:
        yield writer.role()
        item = live.first
        while True:
            if isinstance(item, Completion):
                final = item
                break
            yield writer.text(item)
            try:
                item = await anext(live.rest)
            except StopAsyncIteration:
                break
        yield writer.finish(final.finish_reason if final is not None else "stop")
        if plan.chat.include_usage and final is not None:
            yield writer.usage(final.usage.input_tokens, final.usage.output_tokens)
        yield DONE
        status, http_status = "ok", 200
    except BackendError as error:
        # Too late for a status code: say it in the stream, as OpenAI does.
        info = describe(error)
        status, http_status = info.code or "upstream_error", info.status
        yield error_event(info.message, info.type, info.code)
    finally:
        # Shielded: after a disconnect the scope is cancelled, and closing the upstream must still run.
        with anyio.CancelScope(shield=True):
            close = getattr(live.rest, "aclose", None)
            if close is not None:
                await close()
            result = None
            if final is not None:
                call = CallRecord.from_completions([final], 1)
                result = ExecutionResult(
                    final.text, final.finish_reason, live.tier, live.strategy, (call,), failed=live.failed
                )
            await pipeline.finish(plan, result, status, http_status, background=True)
