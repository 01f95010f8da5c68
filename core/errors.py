"""The project's error tree: every failure a user can cause or meet has a typed error here.

    RouterError                 root; the CLI prints its message, never a traceback
    ├── ConfigError             a setting, CLI argument or config file is wrong
    │   └── PolicyError         router.yaml fails validation (messages carry YAML path and line)
    ├── DataError               a data file is malformed (messages name the file and line)
    ├── EmbeddingError          the text encoder cannot be loaded or run
    ├── ClassifierError         the difficulty classifier cannot be used
    │   ├── NotFittedError      predict before fit
    │   └── ArtifactError       a saved classifier is missing, corrupt or incompatible
    └── BackendError            a model backend failed
        ├── BackendTimeout      no answer in time
        ├── BackendUnavailable  the upstream refused or is down
        │   └── BackendRateLimited  the upstream kept answering 429 after our retries
        └── BackendBadResponse  the upstream answered with a body we cannot use
    RequestError                a client's HTTP request cannot be served as sent (the proxy answers 4xx)
    ├── InvalidRequest          a field is missing, mistyped or out of range (400, names the field)
    ├── ModelNotFound           the model is not `router`, a tier, or an allowed pass-through (404)
    ├── AuthenticationFailed    no API key, or an unknown one (401)
    └── LimitExceeded           a per-key rate limit or budget is spent (429)

Messages are full sentences that say what to do next.
"""

from __future__ import annotations


class RouterError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(RouterError):
    """A setting, CLI argument or configuration file is invalid."""


class PolicyError(ConfigError):
    """router.yaml does not validate; the message lists each problem with its YAML path and line."""


class DataError(RouterError):
    """A data file cannot be read or has a malformed row."""


class EmbeddingError(RouterError):
    """The sentence embedding model cannot be loaded or run."""


class ClassifierError(RouterError):
    """The difficulty classifier cannot be used as asked."""


class NotFittedError(ClassifierError):
    """The classifier was used before `fit` was called."""


class ArtifactError(ClassifierError):
    """A classifier artifact is missing, corrupt, or was made by an incompatible version."""


class BackendError(RouterError):
    """A model backend failed to produce a completion."""

    # Calls already made and paid for before the failure (strategies' CallRecords), so that the
    # executor can still account them when a fallback answers or the request fails.
    spent_calls: tuple[object, ...] = ()


class BackendTimeout(BackendError):
    """A model backend did not answer within its timeout."""


class BackendUnavailable(BackendError):
    """A model backend refused the request or could not be reached."""


class BackendRateLimited(BackendUnavailable):
    """A model backend kept rate-limiting the request (HTTP 429) after every retry."""


class BackendBadResponse(BackendError):
    """A model backend answered, but with a malformed or unusable body."""


class RequestError(RouterError):
    """A client's request cannot be served as sent; `param` names the offending field, if one."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class InvalidRequest(RequestError):
    """A request field is missing, has the wrong type, or is out of range."""


class ModelNotFound(RequestError):
    """The requested model is neither `router`, a tier, nor a pass-through model the config allows."""


class AuthenticationFailed(RequestError):
    """The request carries no API key, or one the proxy does not know."""


class LimitExceeded(RequestError):
    """A per-key rate limit or spending budget is exhausted; `retry_after_s` says when to retry."""

    def __init__(
        self, message: str, *, code: str = "rate_limit_exceeded", retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s
