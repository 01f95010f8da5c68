"""`router report` (cost per correct answer) and `router ledger export` (the ledger as training data)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from router.cli._common import REDIS_ENV_VARS, configure_logging, reports_errors
from core.errors import ConfigError, DataError

if TYPE_CHECKING:  # imported when a command runs: redis and pydantic would slow every `router` call
    from router.ledger.monitor import Monitor
    from router.ledger.report import Report
    from router.ledger.sync_ledger import SyncRedisLedger

ledger_app = typer.Typer(help="Work with the request ledger: export it as training data.", no_args_is_help=True)


# Choices as Literals: typer lists and checks them, and mypy checks them against router.ledger.report's
# By and Source, which cannot be imported here without loading redis for every `router` call.
ByChoice = Literal["tier", "policy", "app", "key", "rule", "day"]
SourceChoice = Literal["records", "aggregates"]
ExportFormat = Literal["jsonl", "records"]  # routing outcomes (train-ready), or the raw records


RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", envvar=REDIS_ENV_VARS, help="The ledger's Redis, e.g. redis://127.0.0.1:6379/0 (default: $REDIS_URL)."),
]
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="Key prefix of the ledger in Redis (ledger.key_prefix; default router:).")
]
SinceHelp = "Window start: a duration (90m, 24h, 7d, 2w), an ISO date or time (UTC unless it says), or 'all'."


def _ledger(redis_url: str | None, prefix: str | None) -> SyncRedisLedger:
    from pydantic import ValidationError

    from router.ledger.config import DEFAULT_PREFIX, LedgerConfig
    from router.ledger.sync_ledger import SyncRedisLedger

    try:
        config = LedgerConfig(redis_url=redis_url, key_prefix=prefix or DEFAULT_PREFIX)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"Invalid ledger option: {problems}. Fix --redis-url / --prefix.") from None
    return SyncRedisLedger(config)


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"${value:,.2f}"
    return "$" + (f"{value:.6f}".rstrip("0").rstrip(".") or "0")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


@reports_errors
def report_command(
    since: Annotated[str, typer.Option("--since", help=SinceHelp)] = "24h",
    by: Annotated[ByChoice, typer.Option("--by", help="One row per tier, policy version, app, API key, rule or UTC day (key and rule: --source records).")] = "tier",
    source: Annotated[
        SourceChoice,
        typer.Option("--source", help="records: exact, from the stream; aggregates: per-day totals, kept longer."),
    ] = "records",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (rows carry cost_per_correct).")] = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also write a PNG: accuracy vs cost per query, and a reliability diagram "
                     "(with --sources: predicted vs observed success by day)."),
    ] = None,
    sources: Annotated[
        bool,
        typer.Option("--sources", help="Instead: per tier and UTC day, requests, graded share, and for each verdict "
                     "source (feedback, reference, judge, agreement) accuracy, cost per correct answer and "
                     "predicted vs observed success (calibration drift). From records."),
    ] = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    """Requests, cost, accuracy and cost per correct answer, by tier, policy, app or day."""
    from router.ledger.report import build_report, parse_since, report_from_records

    configure_logging(verbose)
    now = time.time()
    start = parse_since(since, now)
    ledger = _ledger(redis_url, prefix)
    if sources:
        _sources_report(ledger, start, now, as_json, plot)
        return
    try:
        report = build_report(ledger, by, start, now, source)
        if plot is not None:
            from router.ledger.plot import plot_report

            drawn = report if source == "records" else report_from_records(ledger.records(start, now), by, start, now)
            plot_report(drawn, plot)
    finally:
        ledger.close()
    _emit(report.as_dict(), lambda: _print_table(report), as_json, plot)


def _sources_report(ledger: SyncRedisLedger, start: float | None, now: float, as_json: bool, plot: Path | None) -> None:
    from router.ledger.monitor import monitor_from_records

    try:
        monitor = monitor_from_records(ledger.records(start, now), start, now)
    finally:
        ledger.close()
    if plot is not None:
        from router.ledger.plot import plot_monitor

        plot_monitor(monitor, plot)
    _emit(monitor.as_dict(), lambda: _print_sources(monitor), as_json, plot)


def _emit(data: dict[str, Any], print_table: Callable[[], None], as_json: bool, plot: Path | None) -> None:
    """A report as JSON or a table, then where its plot went (on stderr beside JSON, to keep stdout parseable)."""
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        print_table()
    if plot is not None:
        typer.echo(f"wrote {plot}", err=as_json)


def _print_sources(monitor: Monitor) -> None:
    from router.ledger.report import iso

    console = Console() if Console().is_terminal else Console(width=140)
    window = f"since {iso(monitor.since)}" if monitor.since is not None else "all time"
    if not monitor.rows:
        console.print(f"No ledger records {window}.")
        return
    table = Table(title=f"ledger by UTC day, tier and verdict source, {window}", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("day", "tier", "requests", "graded", "source", "n", "accuracy [95%]", "cost/correct",
                   "predicted", "drift"):
        table.add_column(column, justify="left" if column in ("day", "tier", "source") else "right", no_wrap=True)
    for row in monitor.rows:
        head = [row.day, row.tier, str(row.requests), _ratio(row.graded_share)]
        figures = [row.sources[s] for s in sorted(row.sources, key=_source_rank)]
        if not figures:
            table.add_row(*head, "-", "0", "-", "-", "-", "-", end_section=True)
        for i, f in enumerate(figures):
            accuracy = f.accuracy
            shown = "-" if accuracy is None else f"{accuracy.value:.1%} [{accuracy.low:.0%}, {accuracy.high:.0%}]"
            drift = "-" if f.drift is None else f"{100 * f.drift:+.1f} pt"
            table.add_row(*(head if i == 0 else [""] * 4), f.source, str(f.graded), shown, _usd(f.cost_per_correct),
                          _ratio(f.predicted), drift, end_section=i == len(figures) - 1)
    console.print(table)
    console.print(
        "Each source counted on its own (a request graded by two sources counts in both). predicted: mean "
        f"1 - difficulty, the classifier's P(success) for {monitor.predicts_tier} (the cheapest tier); drift: "
        "observed - predicted on the same requests (for other tiers, their gain over it).", style="dim",
    )


def _source_rank(source: str) -> int:
    from router.ledger.entry import VERDICT_SOURCES

    return VERDICT_SOURCES.index(source) if source in VERDICT_SOURCES else len(VERDICT_SOURCES)


def _print_table(report: Report) -> None:
    from router.ledger.report import iso

    console = Console() if Console().is_terminal else Console(width=120)
    window = f"since {iso(report.since)}" if report.since is not None else "all time"
    table = Table(title=f"ledger by {report.by}, {window} ({report.source})", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in (report.by, "requests", "share", "cost", "cost/req", "graded", "accuracy", "cost/correct"):
        table.add_column(column, justify="left" if column == report.by else "right", no_wrap=True)
    last = report.rows[-1] if report.rows else None
    for row in [*report.rows, report.total]:
        c = row.counts
        table.add_row(row.key, str(c.requests), _ratio(row.share), _usd(c.cost_usd), _usd(c.cost_per_request),
                      str(c.graded), _ratio(c.accuracy), _usd(c.cost_per_correct), end_section=row is last)
    if not report.rows:
        console.print(f"No ledger records {window}.")
    else:
        console.print(table)
        console.print("accuracy: correct / graded. cost/correct: cost of graded requests / correct among them.",
                      style="dim")
    for note in report.notes:
        console.print(f"note: {note}", style="yellow")


@ledger_app.command("export")
@reports_errors
def export_command(
    export_format: Annotated[
        ExportFormat,
        typer.Option("--format", help="jsonl: routing outcomes for `router classifier train`; records: raw records."),
    ] = "jsonl",
    graded_only: Annotated[
        bool, typer.Option("--graded-only", help="Only graded records (always so for jsonl: an outcome needs a verdict).")
    ] = False,
    tiers: Annotated[
        str | None,
        typer.Option("--tiers", help="jsonl: comma-separated tiers to export, cheapest first (default: all seen, by cost)."),
    ] = None,
    since: Annotated[str, typer.Option("--since", help=SinceHelp)] = "all",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: standard output).")] = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Export ledger records: `--format jsonl` gives rows that `router classifier train --data` reads."""
    from router.ledger.export import outcome_rows, record_rows, write_jsonl
    from router.ledger.report import parse_since

    start = parse_since(since, time.time())
    ledger = _ledger(redis_url, prefix)
    try:
        records = ledger.records(start)
    finally:
        ledger.close()
    if export_format == "jsonl":
        tier_list = None if tiers is None else [t.strip() for t in tiers.split(",")]
        rows, summary = outcome_rows(records, tier_list)
        if not rows:
            raise DataError(
                "Nothing to export: " + "; ".join(summary.lines()) + ". Grade requests (POST /v1/feedback or "
                "`router eval`) with ledger.store_prompts: true, and check --tiers and --since."
            )
    else:
        rows, summary = record_rows(records, graded_only)
    if output is None:
        write_jsonl(rows, sys.stdout)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8") as handle:
            write_jsonl(rows, handle)
    for line in summary.lines():
        typer.echo(line, err=True)
