"""Options shared by `router classifier train --from-ledger` and `router policy calibrate --from-ledger`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from router.cli._common import redis_url

if TYPE_CHECKING:
    from router.live.training import LedgerTrainingData

FromLedgerOption = Annotated[
    bool,
    typer.Option("--from-ledger", help="Use the ledger's own graded traffic (explored prompts) instead of --data."),
]
SinceOption = Annotated[
    str, typer.Option("--since", help="With --from-ledger: records since a duration (7d), an ISO date, or 'all'.")
]
SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", help="With --from-ledger: verdict sources to use (repeat): feedback, reference, judge, agreement."),
]
MinPerTierOption = Annotated[
    int, typer.Option("--min-per-tier", min=1, help="With --from-ledger: fail unless this many prompts are graded at every tier.")
]
LedgerRedisOption = Annotated[
    str | None,
    typer.Option("--redis-url", envvar=["REDIS_URL", "ROUTER_REDIS_URL"], show_default=False,
                 help="With --from-ledger: the ledger's Redis (default: $REDIS_URL)."),
]
LedgerPrefixOption = Annotated[str | None, typer.Option("--prefix", help="With --from-ledger: the ledger's key prefix.")]


def export_ledger_data(
    out: Path, url: str | None, prefix: str | None, since: str, sources: list[str] | None, min_per_tier: int,
    tiers: list[str] | None = None,
) -> LedgerTrainingData:
    """Export the ledger's training rows to `out` and say on stderr what they came from."""
    from router.live.training import export_for_training, parse_since_option

    data = export_for_training(
        redis_url(url), out, prefix=prefix, since=parse_since_option(since), sources=sources, tiers=tiers,
        min_per_tier=min_per_tier,
    )
    for line in data.summary:
        typer.echo(line, err=True)
    by_source = ", ".join(f"{source} {count}" for source, count in sorted(data.sources.items())) or "none"
    typer.echo(f"verdicts used, by source: {by_source}", err=True)
    return data


def record_ledger_metadata(artifact: Path, metadata: dict[str, object]) -> None:
    """Note in the artifact's classifier.json (under training.ledger) what ledger data it was trained on."""
    import json

    from classifiers.artifact import METADATA_FILE

    path = artifact / METADATA_FILE
    raw = json.loads(path.read_text())
    raw.setdefault("training", {})["ledger"] = metadata
    path.write_text(json.dumps(raw, indent=2) + "\n")
