"""Helpers shared by CLI commands: error reporting and logging set-up."""

from __future__ import annotations

import functools
import logging
import os
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


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr at INFO (or DEBUG with --verbose), in one plain format."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )


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
