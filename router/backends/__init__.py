"""Model backends: one async `generate` seam, with LiteLLM, plain OpenAI-compatible HTTP, local transformers and fake implementations.

Importing this package imports neither litellm nor torch; they load when a backend is built.
"""

from core.llm import (
    REASONING_EFFORTS,
    Backend,
    Completion,
    GenerationParams,
    Message,
    ReasoningEffort,
    TokenPrice,
    Usage,
    split_evenly,
)
from router.backends.fake import FakeBackend, FakeCall, FakeReply
from router.backends.litellm_backend import (
    LiteLLMBackend,
    LiteLLMSettings,
    close_shared_clients,
)
from router.backends.local import (
    DEFAULT_LOCAL_MODEL,
    EMBEDDED_ALIAS,
    LocalBackend,
    LocalModel,
    LocalModelLoader,
    LocalModelSpec,
    ModelSource,
    embedded_gguf_path,
    load_local_model,
    resolve_model_source,
)
from router.backends.openai_http import OpenAIHTTPBackend, OpenAIHTTPSettings, openai_compatible_model

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "EMBEDDED_ALIAS",
    "REASONING_EFFORTS",
    "Backend",
    "Completion",
    "FakeBackend",
    "FakeCall",
    "FakeReply",
    "GenerationParams",
    "LiteLLMBackend",
    "LiteLLMSettings",
    "LocalBackend",
    "LocalModel",
    "LocalModelLoader",
    "LocalModelSpec",
    "Message",
    "ModelSource",
    "OpenAIHTTPBackend",
    "OpenAIHTTPSettings",
    "ReasoningEffort",
    "TokenPrice",
    "Usage",
    "close_shared_clients",
    "embedded_gguf_path",
    "load_local_model",
    "openai_compatible_model",
    "resolve_model_source",
    "split_evenly",
]
