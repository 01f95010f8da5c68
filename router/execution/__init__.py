"""Executing routing decisions: backends per tier, strategies, escalation and fallbacks."""

from router.execution.executor import (
    BackendProvider,
    Choice,
    ExecutionResult,
    Executor,
    LiveStream,
    RequestOptions,
    Target,
    audio_output_field,
    declare_message,
    needs_message,
    spent_calls,
)
from router.execution.providers import DefaultBackends, passthrough_allowed

__all__ = [
    "BackendProvider",
    "Choice",
    "DefaultBackends",
    "ExecutionResult",
    "Executor",
    "LiveStream",
    "RequestOptions",
    "Target",
    "audio_output_field",
    "declare_message",
    "needs_message",
    "passthrough_allowed",
    "spent_calls",
]
