"""Executing routing decisions: backends per tier, strategies, escalation and fallbacks."""

from router.execution.executor import (
    PASSTHROUGH,
    BackendProvider,
    ExecutionResult,
    Executor,
    LiveStream,
    RequestOptions,
    StreamingBackend,
    build_strategy,
    generation_params,
    spent_calls,
)
from router.execution.providers import DefaultBackends, backend_price, passthrough_allowed

__all__ = [
    "PASSTHROUGH",
    "BackendProvider",
    "DefaultBackends",
    "ExecutionResult",
    "Executor",
    "LiveStream",
    "RequestOptions",
    "StreamingBackend",
    "backend_price",
    "build_strategy",
    "generation_params",
    "passthrough_allowed",
    "spent_calls",
]
