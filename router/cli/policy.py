"""`router policy ...`: check, explain, simulate and calibrate router.yaml."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table

from classifiers.records import OutcomeRecord
from policies import Policy, load_policy
from policies.calibrate import Calibration, calibrate, format_threshold, write_thresholds
from policies.checks import request_notes
from policies.simulate import (
    SimulationReport,
    compare,
    load_scores,
    outcome_columns,
    resolve_mapping,
    simulate,
)
from router.cli._common import configure_logging, reports_errors
from router.cli._progress import ProgressEncoder
from router.cli.shadow import shadow_command
from router.cli._ledger_data import (
    FromLedgerOption,
    LedgerPrefixOption,
    LedgerRedisOption,
    MinPerTierOption,
    SinceOption,
    SourceOption,
    export_ledger_data,
)
from core.errors import ConfigError, DataError, PolicyError

policy_app = typer.Typer(
    help="Check, explain, simulate and calibrate the routing policy (router.yaml).",
    no_args_is_help=True,
)
policy_app.command("shadow")(shadow_command)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", envvar="ROUTER_CONFIG", help="Policy file to use.", show_default=True
    ),
]
DataOption = Annotated[
    Path,
    typer.Option("--data", help="Routing-outcome data (JSONL, or any format the loaders read)."),
]
ScoresOption = Annotated[
    Path | None,
    typer.Option(
        "--scores",
        help="JSONL of {id, difficulty} from `router classifier score`; default: run the "
        "policy's classifier on the prompts.",
    ),
]
MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="TIER=COLUMN: which outcome column stands for a tier (repeatable). Default: equal "
        "names, else tiers by cost onto the data's columns in order.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _console() -> Console:
    # Tables wide enough when piped (a terminal keeps its width); long lines never wrapped mid-figure.
    return Console(width=None if sys.stdout.isatty() else 140, soft_wrap=True)


@policy_app.command("check")
def check(
    path: Annotated[
        Path, typer.Argument(envvar="ROUTER_CONFIG", help="Policy file to validate.")
    ] = Path("router.yaml"),
) -> None:
    """Validate a policy file: exit 0 when valid, 1 with each problem's YAML path and line."""
    try:
        policy = load_policy(path)
    except PolicyError as error:
        problems = str(error).splitlines()
        typer.secho(f"{path}: {len(problems)} problem(s)", fg=typer.colors.RED, err=True)
        for line in problems:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(code=1) from None
    config = policy.config
    typer.echo(
        f"{path}: valid (version {policy.version}; {len(config.tiers)} tiers: "
        f"{', '.join(policy.tier_names)}; {len(config.rules)} rules; "
        f"{len(config.escalation)} escalation steps)"
    )
    for note in request_notes(config):
        typer.echo(f"  note: {note}")


@policy_app.command("explain")
@reports_errors
def explain(
    query: Annotated[str, typer.Argument(help="The query text to route.")],
    config: ConfigOption = Path("router.yaml"),
    difficulty: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Use this difficulty instead of the classifier's."),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option("--metadata", "-m", help="KEY=VALUE request metadata (repeatable)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="The model name the client requested.")
    ] = None,
) -> None:
    """Show how the policy routes one query: difficulty, rule, tier, strategy, cost, and why."""
    policy = load_policy(config)
    if difficulty is None:
        scores, origin = _classifier_scores(policy, [query])
        difficulty = float(scores[0])
    else:
        origin = "given with --difficulty"
    pairs = dict(_split_pairs(metadata or [], "--metadata", "KEY=VALUE"))
    decision = policy.decide(query, difficulty, pairs or None, model)
    verdict = policy.apply_budget(decision)
    tier = policy.tier(decision.tier)
    table = Table(show_header=False, box=None)
    table.add_row("policy", f"{policy.source} (version {policy.version})")
    table.add_row("difficulty", f"{difficulty:.4f} ({origin})")
    table.add_row("prompt tokens", f"~{decision.prompt_tokens} (about 4 characters each)")
    table.add_row("rule", decision.rule)
    table.add_row("tier", f"{decision.tier}: {tier.backend} {tier.model}")
    table.add_row("strategy", decision.strategy.describe())
    table.add_row("expected cost", f"${decision.expected_cost_usd:.6f}")
    table.add_row("budget", f"{verdict.action}: {verdict.reason}")
    table.add_row("fallbacks", ", ".join(decision.fallbacks) or "none")
    steps = [
        f"agreement < {s.when.agreement_below:g} -> "
        + (
            f"{s.then.more_samples} more samples"
            if s.then.more_samples
            else f"tier {s.then.to_tier}"
        )
        for s in decision.escalation
    ]
    table.add_row("escalation", "; ".join(steps) or "none")
    table.add_row("why", "\n".join(decision.reasons))
    _console().print(table)


@policy_app.command("simulate")
@reports_errors
def simulate_command(
    data: DataOption,
    config: ConfigOption = Path("router.yaml"),
    against: Annotated[
        Path | None,
        typer.Option("--against", help="A second policy file to compare with the first."),
    ] = None,
    map_: MapOption = None,
    scores: ScoresOption = None,
    json_: JsonOption = False,
) -> None:
    """Replay outcome data through the policy and compare it with baselines.

    Prints accuracy, total cost, cost per 1k queries, cost per correct answer and the share per
    tier, beside always-cheapest, always-strongest, a random router at the same shares, and the
    oracle (the cheapest tier that is correct). With --against, the same for a second policy file
    and the difference.
    """
    records = _outcome_records(data)
    explicit = dict(_split_pairs(map_ or [], "--map", "TIER=COLUMN"))
    policies = [load_policy(path) for path in ([config] if against is None else [config, against])]
    for tier in explicit:
        if len(policies) == 2 and not any(tier in p.tier_names for p in policies):
            raise ConfigError(f"--map names tier '{tier}', which neither policy has.")
    reports: list[tuple[SimulationReport, str, str]] = []
    by_classifier: dict[str, tuple[NDArray[np.float64], str]] = {}
    for policy in policies:
        if scores is not None:
            difficulties, origin = load_scores(scores, records, policy.config.classifier.score), f"scores from {scores}"
        else:
            key = (
                f"{policy.classifier_path}|{policy.config.classifier.embedding_model}|{policy.config.classifier.score}"
            )
            if key not in by_classifier:
                by_classifier[key] = _classifier_scores(policy, [r.prompt for r in records])
            difficulties, origin = by_classifier[key]
        # With --against, each policy takes the --map pairs that name its own tiers.
        own = {t: c for t, c in explicit.items() if len(policies) == 1 or t in policy.tier_names}
        mapping, method = resolve_mapping(policy, outcome_columns(records), own)
        reports.append((simulate(records, difficulties, policy, mapping), method, origin))
    if json_:
        views = [
            {**r.to_dict(), "mapping_method": m, "difficulty_source": o} for r, m, o in reports
        ]
        out: dict[str, object] = {"policy": views[0]}
        if len(reports) == 2:
            out["against"] = views[1]
            out["difference"] = compare(reports[0][0], reports[1][0])
        typer.echo(json.dumps(out, indent=2))
        return
    console = _console()
    for report, how, origin in reports:
        _print_report(console, report, f"{how}; difficulty: {origin}")
    if len(reports) == 2:
        diff = compare(reports[0][0], reports[1][0])
        per_correct = diff["cost_per_correct_usd"]
        console.print(f"[bold]{reports[1][0].source} minus {reports[0][0].source}[/bold]")
        console.print(
            f"  accuracy {diff['accuracy']:+.4f}, total cost ${diff['total_cost_usd']:+.4f}, "
            f"cost per 1k ${diff['cost_per_1k_usd']:+.4f}, cost per correct "
            + ("n/a" if per_correct is None else f"${per_correct:+.6f}")
        )


@policy_app.command("calibrate")
@reports_errors
def calibrate_command(
    data: Annotated[
        Path | None, typer.Option("--data", help="Routing-outcome data (JSONL, or any format the loaders read).")
    ] = None,
    config: ConfigOption = Path("router.yaml"),
    target_quality: Annotated[
        float | None,
        typer.Option(
            help="Reach this share of always-strongest accuracy (e.g. 0.95) at the lowest cost."
        ),
    ] = None,
    max_cost_per_1k: Annotated[
        float | None,
        typer.Option(help="Highest accuracy at no more than this many USD per 1,000 queries."),
    ] = None,
    map_: MapOption = None,
    scores: ScoresOption = None,
    write: Annotated[
        bool,
        typer.Option("--write", help="Update the thresholds in the policy file (nothing else)."),
    ] = False,
    json_: JsonOption = False,
    from_ledger: FromLedgerOption = False,
    since: SinceOption = "all",
    source: SourceOption = None,
    min_per_tier: MinPerTierOption = 50,
    redis_url: LedgerRedisOption = None,
    prefix: LedgerPrefixOption = None,
) -> None:
    """Choose the difficulty thresholds for a quality target or a cost cap (on --data, or --from-ledger).

    Quality is accuracy relative to always-strongest. Prints the trade-off curve; with --write,
    replaces only the threshold numbers in the policy file (comments and layout stay as they are).
    """
    if (target_quality is None) == (max_cost_per_1k is None):
        raise ConfigError(
            "Give exactly one of --target-quality (e.g. 0.95) or --max-cost-per-1k (USD)."
        )
    policy = load_policy(config)
    if from_ledger == (data is not None):
        raise ConfigError("Give exactly one of --data FILE or --from-ledger.")
    if from_ledger:
        with tempfile.TemporaryDirectory() as folder:
            exported = export_ledger_data(Path(folder) / "ledger.jsonl", redis_url, prefix, since, source, min_per_tier)
            records = _outcome_records(exported.path)
    else:
        assert data is not None
        records = _outcome_records(data)
    if scores is not None:
        difficulties, origin = load_scores(scores, records, policy.config.classifier.score), f"scores from {scores}"
    else:
        difficulties, origin = _classifier_scores(policy, [r.prompt for r in records])
    explicit = dict(_split_pairs(map_ or [], "--map", "TIER=COLUMN"))
    mapping, method = resolve_mapping(policy, outcome_columns(records), explicit)
    result = calibrate(
        records,
        difficulties,
        policy,
        mapping,
        target_quality=target_quality,
        max_cost_per_1k=max_cost_per_1k,
    )
    written: Policy | None = write_thresholds(config, result.chosen.thresholds) if write else None
    if json_:
        typer.echo(json.dumps(_calibration_dict(result, mapping, written), indent=2))
        return
    console = _console()
    console.print(f"mapping ({method}): " + ", ".join(f"{t} -> {c}" for t, c in mapping.items()))
    console.print(
        f"difficulty: {origin}; {len(records)} records; bands of rules {', '.join(result.band_rules)}"
    )
    _print_curve(console, result)
    chosen, current = result.chosen, result.current
    console.print(
        f"current thresholds {_thresholds(current.thresholds)}: quality {_num(current.quality)}, "
        f"${current.cost_per_1k_usd:.4f} per 1k, {_usd(current.cost_per_correct_usd)} per correct"
    )
    console.print(
        f"[bold]chosen thresholds {_thresholds(chosen.thresholds)}[/bold]: quality {_num(chosen.quality)}, "
        f"strong share {chosen.strong_share:.1%}, ${chosen.cost_per_1k_usd:.4f} per 1k, "
        f"{_usd(chosen.cost_per_correct_usd)} per correct"
    )
    if written is not None:
        console.print(
            f"wrote the thresholds to {config} (policy version {policy.version} -> {written.version})"
        )
    else:
        console.print(f"run again with --write to put them into {config}")


def _print_report(console: Console, report: SimulationReport, note: str) -> None:
    console.print(
        f"[bold]{report.source}[/bold] (version {report.policy_version}), {report.records} records; "
        f"mapping ({note}): " + ", ".join(f"{t} -> {c}" for t, c in report.mapping.items())
    )
    table = Table()
    for column in (
        "router",
        "accuracy",
        "quality",
        "total cost",
        "cost per 1k",
        "cost per correct",
    ):
        table.add_column(column, justify="left" if column == "router" else "right")
    for tier in report.tiers:
        table.add_column(f"share {tier}", justify="right")
    for r in report.results:
        table.add_row(
            r.name,
            f"{r.accuracy:.4f}",
            _num(r.quality),
            f"${r.total_cost_usd:.4f}",
            f"${r.cost_per_1k_usd:.4f}",
            _usd(r.cost_per_correct_usd),
            *(f"{r.shares[t]:.1%}" for t in report.tiers),
        )
    console.print(table)


def _print_curve(console: Console, result: Calibration) -> None:
    table = Table(title="trade-off (cheapest first; * = chosen)")
    for column in (
        "thresholds",
        "strong share",
        "accuracy",
        "quality",
        "cost per 1k",
        "cost per correct",
    ):
        table.add_column(column, justify="right")
    for p in result.frontier():
        mark = " *" if p == result.chosen else ""
        table.add_row(
            _thresholds(p.thresholds) + mark,
            f"{p.strong_share:.1%}",
            f"{p.accuracy:.4f}",
            _num(p.quality),
            f"${p.cost_per_1k_usd:.4f}",
            _usd(p.cost_per_correct_usd),
        )
    console.print(table)


def _calibration_dict(
    result: Calibration, mapping: dict[str, str], written: Policy | None
) -> dict[str, object]:
    return {
        "mapping": mapping,
        "band_rules": list(result.band_rules),
        "strongest_accuracy": result.strongest_accuracy,
        "chosen": asdict(result.chosen),
        "current": asdict(result.current),
        "curve": [asdict(p) for p in result.frontier()],
        "written_version": written.version if written else None,
    }


def _outcome_records(path: Path) -> list[OutcomeRecord]:
    from classifiers.loaders import (
        load_records,
    )  # here, not at the top: keeps `router --help` light

    records = load_records(path).records
    lacking = [r.id for r in records if not r.outcomes]
    if lacking:
        raise DataError(
            f"{path}: {len(lacking)} rows have no per-tier outcomes (first: {lacking[0]}); simulate "
            "and calibrate need routing-outcome data (see docs/data-format.md)."
        )
    return records


def _classifier_scores(policy: Policy, texts: Sequence[str]) -> tuple[NDArray[np.float64], str]:
    """Difficulties from the classifier the policy names (none named: the shipped default)."""
    from classifiers.loading import load_policy_classifier  # here, not at the top: loads onnxruntime

    configure_logging()
    path = policy.classifier_path
    classifier = load_policy_classifier(policy)
    if classifier.encoder is not None:  # an estimate, then progress, when there are many prompts
        classifier.encoder = ProgressEncoder(classifier.encoder, "scoring")
    score = policy.config.classifier.score
    scores = np.asarray(classifier.predict_score(list(texts), score), dtype=np.float64)
    return scores, f"classifier {path or 'default (data/classifier)'} ({score})"


def _split_pairs(values: Sequence[str], option: str, form: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise ConfigError(f"{option} takes {form}, got {value!r}.")
        pairs.append((key, rest))
    return pairs


def _thresholds(values: tuple[float, ...]) -> str:
    return ", ".join(format_threshold(v) for v in values)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"
