"""`router policy shadow`: run a candidate router.yaml on a share of live traffic, then compare (docs/live.md)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from router.cli._common import RedisUrlOption, configure_logging, redis_url, reports_errors
from core.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from router.ledger.intervals import Interval
    from router.live.shadow_report import ShadowComparison


@reports_errors
def shadow_command(
    candidate: Annotated[
        Path | None,
        typer.Option("--candidate", help="Start shadowing this edited router.yaml (replaces any candidate shadowed now)."),
    ] = None,
    report: Annotated[bool, typer.Option("--report", help="Compare the live policy with the candidate.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop shadowing the candidate started with --candidate.")] = False,
    sample: Annotated[
        float, typer.Option("--sample", min=0.0, max=1.0, help="With --candidate: share of routed requests shadowed.")
    ] = 0.05,
    daily_budget: Annotated[
        float | None,
        typer.Option("--daily-budget", min=0.0, help="With --candidate: USD per UTC day for the candidate's answers "
                     "and both verdicts (default: no cap)."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="With --report: the candidate version (default: the one shadowed now).")
    ] = None,
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="ROUTER_CONFIG", help="The live policy file (its judge grades both).")
    ] = Path("router.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="With --report: print JSON.")] = False,
    redis: RedisUrlOption = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Key prefix of the ledger and the queue.")] = "router:",
) -> None:
    """Shadow a candidate policy on live traffic: the proxy and workers pick it up within seconds, no restart.

    A sampled share of routed requests is also classified, decided and answered by the candidate
    (by `router worker`, off the response path); the live policy's judge grades both answers; --report
    shows accuracy, cost and cost per correct answer of both, with 95% intervals.
    """
    if sum((candidate is not None, report, stop)) != 1:
        raise ConfigError("router policy shadow: give exactly one of --candidate FILE, --report or --stop.")
    configure_logging()
    url = redis_url(redis)
    if url is None:
        raise ConfigError("router policy shadow needs the Redis the proxy uses: pass --redis-url or set REDIS_URL.")
    if candidate is not None:
        _start(url, prefix, candidate, config, sample, daily_budget)
    elif stop:
        _stop(url, prefix)
    else:
        _report(url, prefix, version, config, as_json)


def _client(url: str, prefix: str) -> Redis:
    from router.redis_client import async_redis  # here: redis is slow to import for every `router` call

    return async_redis(url, prefix=prefix, prefix_setting="--prefix", socket_timeout=10, socket_connect_timeout=5)


def _start(url: str, prefix: str, candidate: Path, config: Path, sample: float, budget: float | None) -> None:
    from policies import load_policy
    from router.live.shadow import ShadowStore

    live = load_policy(config)
    if live.config.grading.judge_tier is None:
        raise ConfigError(
            f"{config}: grading.judge_tier is not set; shadowing grades the live and the candidate answers with the "
            "judge: name a judge tier in the live router.yaml."
        )
    load_policy(candidate)  # PolicyError lists every problem of the candidate
    if sample <= 0:
        raise ConfigError("--sample: must be above 0 to shadow anything (e.g. --sample 0.05).")
    text = candidate.read_text(encoding="utf-8")

    async def go() -> str:
        client = _client(url, prefix)
        try:
            return await ShadowStore(client, prefix).start(text, str(candidate.resolve()), sample, budget)
        finally:
            await client.aclose()

    started = asyncio.run(go())
    cap = "no daily cap" if budget is None else f"at most ${budget:g} a day"
    typer.echo(
        f"shadowing candidate {started} ({candidate}) on {sample:.1%} of routed requests, {cap}; running proxies "
        f"and workers pick it up within seconds.\nCompare with: router policy shadow --report"
    )


def _stop(url: str, prefix: str) -> None:
    from router.live.shadow import ShadowStore

    async def go() -> str | None:
        client = _client(url, prefix)
        try:
            spec = await ShadowStore(client, prefix).stop()
        finally:
            await client.aclose()
        return None if spec is None else spec.version

    stopped = asyncio.run(go())
    if stopped is None:
        typer.echo("no candidate was shadowed from the command line (a shadow: section in router.yaml stays).")
    else:
        typer.echo(f"stopped shadowing candidate {stopped}; its rows stay for --report --version {stopped}.")


def _report(url: str, prefix: str, version: str | None, config: Path, as_json: bool) -> None:
    from policies.loader import content_version
    from router.live.shadow import ShadowStore, section_candidate
    from router.live.shadow_report import compare

    async def go() -> tuple[str, ShadowComparison]:
        client = _client(url, prefix)
        try:
            store = ShadowStore(client, prefix)
            chosen = version
            if chosen is None:
                active = await store.active()
                chosen = active.version if active is not None else None
            if chosen is None and config.exists():
                from policies import load_policy

                path = section_candidate(load_policy(config))
                if path is not None and path.exists():
                    chosen = content_version(path.read_bytes())
            if chosen is None:
                known = await store.versions()
                if not known:
                    raise ConfigError(
                        "Nothing has been shadowed yet: start with `router policy shadow --candidate edited.yaml`."
                    )
                chosen = known[-1][0]
            return chosen, compare(chosen, await store.rows(chosen))
        finally:
            await client.aclose()

    chosen, comparison = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps(comparison.as_dict(), indent=2))
        return
    _print(comparison)


def _print(c: ShadowComparison) -> None:
    console = Console(width=None if sys.stdout.isatty() else 140, soft_wrap=True)
    if c.graded == 0:
        console.print(f"candidate {c.version}: {c.rows} shadowed requests, none graded on both sides yet.")
        return
    table = Table(
        title=f"live policy vs candidate {c.version}: {c.graded} requests graded on both sides "
              f"({c.rows} shadowed; the candidate chose another plan on {c.different})",
        box=box.SIMPLE_HEAD, pad_edge=False,
    )
    for column in ("", "live", "candidate", "candidate − live"):
        table.add_column(column, justify="left" if not column else "right", no_wrap=True)
    table.add_row("accuracy", _pct(c.live.accuracy), _pct(c.candidate.accuracy), _pct(c.accuracy_difference, sign=True))
    table.add_row("cost / request", _usd(c.live.cost_per_request), _usd(c.candidate.cost_per_request),
                  _usd(c.cost_difference, sign=True))
    table.add_row("cost / correct", _usd(c.live.cost_per_correct), _usd(c.candidate.cost_per_correct), "")
    table.add_row("tiers", _tiers(c.live.tiers), _tiers(c.candidate.tiers), "")
    console.print(table)
    console.print(
        "95% intervals in brackets: Wilson (accuracy), normal (means and paired differences), delta method "
        "(cost per correct answer). Verdicts: the live policy's judge, on both answers.", style="dim",
    )


def _pct(interval: Interval | None, sign: bool = False) -> str:
    if interval is None:
        return "-"
    form = "{:+.1%}" if sign else "{:.1%}"
    return f"{form.format(interval.value)} [{form.format(interval.low)}, {form.format(interval.high)}]"


def _usd(interval: Interval | None, sign: bool = False) -> str:
    if interval is None:
        return "-"

    def one(value: float) -> str:
        text = f"${abs(value):.6g}"
        return ("-" if value < 0 else "+" if sign else "") + text

    return f"{one(interval.value)} [{one(interval.low)}, {one(interval.high)}]"


def _tiers(counts: dict[str, int]) -> str:
    return ", ".join(f"{tier} {n}" for tier, n in counts.items())
