"""Process-level settings of the proxy, from arguments or `ROUTER_*` environment variables.

Policy-level settings (API keys with their limits, pass-through models) live in router.yaml's
`server:` section, so they hot-reload with the policy; these are the ones a process needs
before it can read that file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from policies.schema import LedgerSettings
from router.ledger import LedgerConfig


class ServerSettings(BaseSettings):
    """How one proxy process runs; secrets are SecretStr, so `repr` never shows them."""

    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="forbid", frozen=True)

    config: Path = Field(default=Path("router.yaml"), description="The policy file (router.yaml).")
    redis_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("redis_url", "REDIS_URL", "ROUTER_REDIS_URL"),
        description="Redis for API keys, rate limits and budgets shared by every worker; unset: per process.",
    )
    redis_prefix: str = Field(default="router:", min_length=1, description="Prefix of every Redis key.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Client API keys (comma-separated in ROUTER_API_KEYS), besides those in router.yaml.",
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1_024, description="Larger request bodies get a 400.")
    max_tokens_limit: int = Field(
        default=131_072, ge=1, description="A client's max_tokens above this is lowered to it (each tier caps it again)."
    )
    max_messages: int = Field(default=1_000, ge=1, description="More messages than this get a 400.")
    reload_interval_s: float = Field(
        default=0.5, ge=0, description="How often to check router.yaml for edits; 0 turns hot reload off."
    )
    direct_http: bool = Field(
        default=True,
        description="Call OpenAI-compatible litellm tiers (openai/, hosted_vllm/ with api_base) over plain HTTP.",
    )
    preload: bool = Field(default=True, description="Load the classifier and local models at start-up.")
    classifier_batch: int = Field(default=32, ge=1, description="Most prompts embedded in one classifier call.")
    classifier_process: bool = Field(
        default=True,
        description="Score classifier batches in a child process, so their Python work never holds the event "
        "loop's GIL; false: in a thread of this process (one process less: ~270 MB less memory with the "
        "shipped classifier).",
    )
    classifier_threads_alone: int = Field(
        default=2, ge=1,
        description="Encoder threads for a request alone in the proxy (both cores are idle then), when batches go to "
        "the classifier process; 1: never a second core.",
    )
    torch_threads: int | None = Field(
        default=1, ge=1,
        description="Intra-op threads for the classifier and local models; 1 keeps torch from fighting the "
        "event loop (OpenMP spin) on a busy machine; unset: torch's default.",
    )
    gc_freeze: bool = Field(
        default=True, description="Freeze start-up objects out of the garbage collector (tail latency)."
    )
    ledger_store_prompts: bool = Field(
        default=False,
        description="Deprecated: use `ledger: {store_prompts: true}` in router.yaml. Keeps each request's last user "
        "message in the ledger.",
    )

    def ledger_config(self, section: LedgerSettings | None = None) -> LedgerConfig:
        """The ledger this process writes to: Redis when redis_url is set, else in memory only.

        Prompts are stored when router.yaml says `ledger: {store_prompts: true}` (read at start-up)
        or, as before that key existed, when ROUTER_LEDGER_STORE_PROMPTS is set.
        """
        return LedgerConfig(
            redis_url=self.redis_url.get_secret_value() if self.redis_url else None,
            key_prefix=self.redis_prefix,
            store_prompts=self.ledger_store_prompts or (section is not None and section.store_prompts),
        )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
