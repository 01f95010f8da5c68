"""The pydantic schema of router.yaml: every key, its type and its per-field limits.

A tier's `strategy:` section is validated by the strategy itself (`strategies.registry`).
Checks that span fields (tier names that rules refer to, difficulty bands that must tile [0, 1],
backend-specific options...) live in `policies.checks`, so that each can point at the exact key.
Documented with a commented example in docs/policy.md.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from strategies import AnyStrategy, Direct

# Strict: a YAML string never silently becomes a number, nor a number a string.
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)

ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Model(BaseModel):
    model_config = _STRICT


class FirstStageConfig(_Model):
    """The static first stage of a two-stage score: it decides alone far from every threshold."""

    path: str | None = None  # a first-stage folder (bench/two_stage.py --write); None: the shipped one
    # At most this share of queries decided differently from the transformer, per threshold (its
    # margin is calibrated on out-of-fold scores at each of the policy's thresholds).
    disagreement: float = Field(default=0.005, ge=0.0, le=0.1)


class ClassifierConfig(_Model):
    """Which difficulty classifier scores queries."""

    path: str | None = None
    embedding_model: str | None = None
    # difficulty: P(cheapest tier wrong). gain: P(strongest tier right) - P(cheapest tier right),
    # floored at 0, which keeps prompts every tier fails on the cheap tier (see data/README.md).
    score: Literal["difficulty", "gain"] = "difficulty"
    # None: the transformer scores every query. See docs/policy.md, "Two-stage scoring".
    first_stage: FirstStageConfig | None = None


class PriceConfig(_Model):
    """A tier's price: USD per million tokens, or an hourly machine price and its throughput."""

    input_per_million: float | None = Field(default=None, ge=0)
    output_per_million: float | None = Field(default=None, ge=0)
    gpu_hour_usd: float | None = Field(default=None, ge=0)
    tokens_per_second: float | None = Field(default=None, gt=0)
    prompt_tokens_per_second: float | None = Field(default=None, gt=0)


Capability = Literal["vision", "audio", "files"]
CAPABILITIES: tuple[Capability, ...] = get_args(Capability)


class Tier(_Model):
    """A model tier: where completions come from, what they cost, and how much compute to spend."""

    name: str = Field(pattern=NAME_PATTERN)
    backend: Literal["litellm", "local"]
    model: str = Field(min_length=1)
    # local only
    gguf_file: str | None = None
    device: Literal["auto", "cpu", "cuda"] | None = None
    # litellm only
    api_base: str | None = None
    api_key_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    price: PriceConfig | None = None
    max_tokens: int = Field(default=1024, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    expected_output_tokens: int = Field(default=256, ge=1)
    strategy: AnyStrategy = Field(default_factory=Direct)
    # What the model takes beside text; a request that needs one goes only to tiers declared with it (else 400).
    vision: bool = False  # image_url content parts
    audio: bool = False  # input_audio content parts, and audio output (`audio`, `modalities: [..., "audio"]`)
    files: bool = False  # file content parts (PDFs)

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The capabilities declared true."""
        return frozenset(name for name in CAPABILITIES if getattr(self, name))


class Band(_Model):
    """A difficulty band [min, max); a band whose max is 1 includes 1."""

    min: float = Field(default=0.0, ge=0, le=1)
    max: float = Field(default=1.0, ge=0, le=1)


class TokenRange(_Model):
    """A prompt length range [min, max) in estimated tokens (about 4 characters each)."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=1)


class When(_Model):
    """Conditions of a rule; all given conditions must hold."""

    difficulty: Band | None = None
    prompt_tokens: TokenRange | None = None
    model: list[str] | None = None
    metadata: dict[str, str] | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _one_model_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class Rule(_Model):
    """An ordered routing rule: the first rule whose `when` holds picks the tier."""

    name: str = Field(pattern=NAME_PATTERN)
    when: When | None = None
    tier: str


class EscalationWhen(_Model):
    """When to escalate: the strategy's answer agreement fell below a level."""

    agreement_below: float = Field(gt=0, le=1)


class EscalationThen(_Model):
    """What escalation does: more samples on the same tier, or rerun on another tier (one of them)."""

    more_samples: int | None = Field(default=None, ge=1)
    to_tier: str | None = None


class EscalationStep(_Model):
    """One escalation step, tried in file order for its from_tier."""

    from_tier: str
    when: EscalationWhen
    then: EscalationThen


class Budgets(_Model):
    """Spending limits, checked against a decision's expected cost."""

    max_cost_per_request_usd: float | None = Field(default=None, gt=0)
    per_key_daily_usd: float | None = Field(default=None, gt=0)
    on_exceeded: Literal["downgrade", "refuse"] = "downgrade"


class ApiKey(_Model):
    """One client API key of the proxy: named for ledger and metrics, the secret itself never in the file."""

    name: str = Field(pattern=NAME_PATTERN)
    key_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)  # variable holding the key
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")  # hex sha256 of the key
    requests_per_minute: int | None = Field(default=None, ge=1)  # overrides rate_limit's
    admin: bool = False  # may grade any request on /v1/feedback, not only its own


class RateLimit(_Model):
    """Per-key request rate: a token bucket refilled at requests_per_minute, holding `burst`."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    burst: int | None = Field(default=None, ge=1)  # default: one minute's worth


class Passthrough(_Model):
    """Which other model names the proxy forwards untouched (fnmatch patterns), and where."""

    models: list[str] = Field(default_factory=list)
    api_base: str | None = None
    api_key_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    price: PriceConfig | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_tokens: int = Field(default=4096, ge=1)
    fallbacks: list[str] = Field(default_factory=list)  # tiers tried when the upstream fails


class RedisConfig(_Model):
    """How requests use Redis (API keys, rate limits, budgets): a time bound, and what an outage does."""

    timeout_s: float = Field(default=0.25, gt=0, le=10)  # per Redis call on the request path
    # open: serve without rate limits and budgets while Redis fails; closed: answer 503 instead.
    on_error: Literal["open", "closed"] = "open"


class ReloadConfig(_Model):
    """How the file watcher takes edits of this file (docs/policy.md, "Deploying an edit")."""

    settle_s: float = Field(default=1.0, ge=0, le=60)  # unchanged this long before an edit is loaded
    # Read from the NEW file: let it drop every API key source (api_keys, redis_api_keys).
    allow_auth_downgrade: bool = False


class SessionsConfig(_Model):
    """Session-aware routing: a conversation keeps the tier it reached, or moves up (docs/proxy.md, "Sessions")."""

    enabled: bool = False
    idle_s: int = Field(default=1800, ge=1, le=7 * 86_400)  # a pin is forgotten after this long unused
    # The client's conversation id; `x-router-session` is accepted too. Without either, the key
    # and the first system and user messages identify the conversation.
    header: str = Field(default="x-session-id", pattern=r"^[A-Za-z0-9-]{1,64}$")


class CorsConfig(_Model):
    """CORS for browser clients (Starlette's CORSMiddleware); absent: no CORS headers at all."""

    allow_origins: list[str] = Field(min_length=1)  # e.g. ["https://app.example.com"], or ["*"]
    allow_headers: list[str] = Field(
        default_factory=lambda: [
            "authorization", "api-key", "content-type", "x-request-id", "x-session-id", "x-router-session",
            "traceparent", "tracestate",
        ]
    )
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    # Response headers a page's script may read (browsers hide the rest).
    expose_headers: list[str] = Field(
        default_factory=lambda: [
            "x-router-request-id", "x-router-tier", "x-router-difficulty", "x-router-strategy", "x-router-cost-usd",
            "x-router-policy-version", "x-router-rule", "x-router-session",
        ]
    )
    allow_credentials: bool = False
    max_age_s: int = Field(default=600, ge=0)  # how long a browser may cache a preflight answer


class ServerConfig(_Model):
    """Proxy settings that live with the policy (and hot-reload with it); docs/proxy.md."""

    api_keys: list[ApiKey] = Field(default_factory=list)
    redis_api_keys: bool = False
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    passthrough: Passthrough = Field(default_factory=Passthrough)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    reload: ReloadConfig = Field(default_factory=ReloadConfig)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    cors: CorsConfig | None = None


class PolicyFile(_Model):
    """The whole of router.yaml."""

    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    tiers: list[Tier] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)
    escalation: list[EscalationStep] = Field(default_factory=list)
    budgets: Budgets = Field(default_factory=Budgets)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)
    # Live traffic (docs/live.md); their models are defined at the end of this file.
    grading: GradingConfig = Field(default_factory=lambda: GradingConfig())
    exploration: ExplorationConfig = Field(default_factory=lambda: ExplorationConfig())
    ledger: LedgerSettings = Field(default_factory=lambda: LedgerSettings())
    queue: QueueConfig = Field(default_factory=lambda: QueueConfig())
    shadow: ShadowConfig = Field(default_factory=lambda: ShadowConfig())



# --- Live traffic: grading, exploration, the job queue, prompt retention (docs/live.md) ---------------


class GradingConfig(_Model):
    """Grade a sampled share of answered requests off the request path, with a judge tier."""

    judge_tier: str | None = None  # any tier of this file; None: no judge verdicts
    sample: float = Field(default=0.0, ge=0, le=1)  # share of answered requests graded
    daily_budget_usd: float | None = Field(default=None, ge=0)  # judge spend per UTC day; None: no cap
    # "auto": choice when the prompt lists lettered options, number when the answer ends in one, else text.
    answer_type: Literal["auto", "number", "choice", "text"] = "auto"
    # number/choice answers of explored tiers also get an `agreement` verdict: same answer as the strongest tier.
    agreement: bool = True
    max_tokens: int = Field(default=512, ge=16)


class ExplorationConfig(_Model):
    """Answer a sampled share of requests with the other tiers too, off the response path."""

    sample: float = Field(default=0.0, ge=0, le=1)
    daily_budget_usd: float | None = Field(default=None, ge=0)  # exploration spend per UTC day; None: no cap
    tiers: list[str] | None = None  # tiers to explore; None: every tier


class LedgerSettings(_Model):
    """What the ledger keeps (where it lives is REDIS_URL / --redis-url)."""

    store_prompts: bool = False  # prompts are personal data; needed for grading, exploration and export
    retention_days: float | None = Field(default=None, gt=0)  # records (with prompts) older than this are trimmed


class QueueConfig(_Model):
    """The Redis Stream of grading and exploration jobs between the proxy and `router worker`."""

    max_depth: int = Field(default=10_000, ge=1)  # a fuller queue sheds new jobs (counted)
    # A queued job is dropped (counted) when Redis has not taken it by then; the response never waits for it.
    enqueue_timeout_s: float = Field(default=0.5, gt=0, le=5)


class ShadowConfig(_Model):
    """Run a candidate router.yaml on a sampled share of live requests, both answers judged."""

    candidate: str | None = None  # path of the candidate policy file (relative to this file)
    sample: float = Field(default=0.0, ge=0, le=1)
    daily_budget_usd: float | None = Field(default=None, ge=0)


PolicyFile.model_rebuild()  # resolve the live sections defined after it
