"""The `router` command line: one typer app, a sub-app per concern.

Every RouterError is printed as a one-line message with exit code 2; users never see a traceback
for a mistake they can fix.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from router.cli.classifier import classifier_app
from router.cli.eval import eval_command
from router.cli.keys import keys_app
from router.cli.policy import policy_app
from router.cli.report import ledger_app, report_command
from router.cli.serve import serve_command
from router.cli.worker import worker_command
from core.errors import RouterError

app = typer.Typer(
    name="router",
    help="Difficulty-aware LLM query router: train the difficulty classifier, check policies, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def package_version() -> str:
    """The installed difficulty-router's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("difficulty-router")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"router (difficulty-router) {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Difficulty-aware LLM query router: train the difficulty classifier, check policies, serve."""


app.add_typer(classifier_app, name="classifier")
app.add_typer(policy_app, name="policy")
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")
app.command("report")(report_command)
app.command("serve")(serve_command)
app.command("eval")(eval_command)
app.command("worker")(worker_command)


def main() -> None:
    """Console-script entry point: run the app, turning RouterError into a clean message."""
    try:
        app(standalone_mode=True)
    except RouterError as error:  # pragma: no cover - exercised through subprocess tests
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
