"""Helpers shared by CLI commands: error reporting and logging set-up."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from core.errors import RouterError

P = ParamSpec("P")
R = TypeVar("R")


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a RouterError raised by a command into `error: <message>` on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RouterError as error:
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper


# The project's own loggers; everything else (transformers, sentence-transformers, httpx, LiteLLM...)
# is third-party and speaks only at WARNING unless -v.
OWN_LOGGERS = ("core", "classifiers", "strategies", "policies", "router")


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr in one plain format: our INFO lines, third-party warnings only, no weight-loading bars.

    With --verbose: our DEBUG lines, third-party INFO lines and the model hub's progress bars.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    # Per-request access lines only where `router serve --access-log` asks for them (router.server.logs).
    logging.getLogger("router.access").setLevel(logging.WARNING)
    quiet_model_loading(not verbose)


def quiet_model_loading(quiet: bool = True) -> None:
    """Hide (or show) the weight-loading and download bars of transformers and the model hub.

    The variables are read when those libraries are imported (commands import them later, lazily);
    the calls cover a library that is imported already.
    """
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1" if quiet else "0"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error" if quiet else "info"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars  # type: ignore[attr-defined]

        (disable_progress_bars if quiet else enable_progress_bars)()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        if quiet:
            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        else:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


# Every command that talks to Redis (serve, worker, report, ledger export, eval, classifier train
# --from-ledger, policy calibrate --from-ledger) takes its URL this one way: --redis-url, else
# $REDIS_URL. ROUTER_REDIS_URL is still read, after REDIS_URL, for configurations written before.
REDIS_ENV_VARS = ["REDIS_URL", "ROUTER_REDIS_URL"]
REDIS_URL_HELP = "Redis URL, e.g. redis://127.0.0.1:6379/0 (default: $REDIS_URL)."
RedisUrlOption = Annotated[
    str | None, typer.Option("--redis-url", envvar=REDIS_ENV_VARS, show_default=False, help=REDIS_URL_HELP)
]


def redis_url(value: str | None = None) -> str | None:
    """The Redis URL a command uses: the --redis-url value, else $REDIS_URL, else $ROUTER_REDIS_URL, else None."""
    if value:
        return value
    for name in REDIS_ENV_VARS:
        found = os.environ.get(name)
        if found:
            return found
    return None
