"""`router classifier ...`: train, evaluate, score and explain the difficulty classifier."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from classifiers.encoders import DEFAULT_EMBEDDING_MODEL
from core.errors import ConfigError
from router.cli._common import configure_logging, reports_errors
from router.cli._progress import ProgressEncoder
from router.cli._ledger_data import (
    FromLedgerOption,
    LedgerPrefixOption,
    LedgerRedisOption,
    MinPerTierOption,
    SinceOption,
    SourceOption,
    export_ledger_data,
    record_ledger_metadata,
)

classifier_app = typer.Typer(help="Train, evaluate, score with and explain the difficulty classifier.", no_args_is_help=True)


def console() -> Console:
    """A console built per call, so width and colour follow the current environment.

    Output to a pipe or file gets 110 columns, so metric tables are never cut to fit 80.
    """
    current = Console()
    return current if current.is_terminal else Console(width=max(current.width, 110))


class Estimator(str, Enum):
    """Which model kind to fit (auto = cross-validate all and keep the best)."""

    auto = "auto"
    logreg = "logreg"
    knn = "knn"
    ensemble = "ensemble"


class DataFormat(str, Enum):
    """Input data formats (auto = detect from the file)."""

    auto = "auto"
    outcomes = "outcomes"
    routellm = "routellm"
    routerbench = "routerbench"
    labels = "labels"


DataOption = Annotated[
    list[str],
    typer.Option("--data", help="Routing-outcome or label file (JSONL/CSV) or URL; repeat for several."),
]
FormatOption = Annotated[DataFormat, typer.Option("--format", help="Format of the --data files.")]
SkipOption = Annotated[
    bool, typer.Option("--skip-bad-rows", help="Skip malformed rows (counted and reported) instead of stopping.")
]
EmbeddingOption = Annotated[
    str | None,
    typer.Option("--embedding-model", help=f"Encoder: the shipped {DEFAULT_EMBEDDING_MODEL} (default, or the artifact's), an exported ONNX folder, or a sentence-transformers name or folder (train extra)."),
]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the on-disk embedding cache.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")]


def _encoder(name: str | None, no_cache: bool) -> Any:
    from classifiers.embedding_cache import EmbeddingCache
    from classifiers.encoders import make_encoder

    # Progress and an estimate come from the wrapper (above the noise), not the encoder's own bars.
    return ProgressEncoder(make_encoder(name, cache=None if no_cache else EmbeddingCache(), show_progress=False))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _metrics_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ("set", "n", "weak", "strong", "AUC", "ECE", "APGR", "CPT50", "CPT80", "APGR-d")
    for column in columns:
        table.add_column(column, justify="left" if column == "set" else "right", no_wrap=True)
    for name, m in rows:
        table.add_row(
            name, str(m.n), _fmt(m.weak_accuracy), _fmt(m.strong_accuracy), _fmt(m.auc), _fmt(m.ece),
            _fmt(m.apgr), _fmt(m.cpt50), _fmt(m.cpt80), _fmt(m.apgr_difficulty),
        )
    return table


def _describe(params: dict[str, Any]) -> str:
    names = {"C": "C", "n_neighbors": "k", "knn_dims": "dims"}
    return str(params.get("model")) + "".join(f" {names[k]}={v}" for k, v in params.items() if k in names)


def _print_result(title: str, result: Any) -> None:
    if result.overall is None:
        console().print(f"{title}: AUC {_fmt(result.auc)} (one target column: routing metrics need two tiers)")
        return
    rows = [("overall", result.overall)] + list(result.by_source.items())
    console().print(_metrics_table(title, rows))
    console().print(
        "weak/strong: accuracy of the cheapest/strongest tier. APGR and CPT50/CPT80 (= CPT(50%)/CPT(80%)) rank "
        "prompts by the predicted gain P(strong ok) - P(weak ok); APGR-d ranks by difficulty P(weak wrong).",
        style="dim",
    )


@classifier_app.command("train")
@reports_errors
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the classifier artifact into.")],
    data: Annotated[
        list[str] | None,
        typer.Option("--data", help="Routing-outcome or label file (JSONL/CSV) or URL; repeat for several."),
    ] = None,
    estimator: Annotated[Estimator, typer.Option("--estimator", help="Model kind; auto picks by cross-validation.")] = Estimator.auto,
    cv: Annotated[int, typer.Option("--cv", min=2, max=20, help="Cross-validation folds for model selection.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for folds and models.")] = 0,
    data_format: FormatOption = DataFormat.auto,
    skip_bad_rows: SkipOption = False,
    embedding_model: EmbeddingOption = None,
    no_cache: NoCacheOption = False,
    no_neighbour_ids: Annotated[
        bool, typer.Option("--no-neighbour-ids", help="Do not store training ids for `explain` in the artifact.")
    ] = False,
    from_ledger: FromLedgerOption = False,
    since: SinceOption = "all",
    source: SourceOption = None,
    min_per_tier: MinPerTierOption = 50,
    redis_url: LedgerRedisOption = None,
    prefix: LedgerPrefixOption = None,
    fine_tune: Annotated[
        bool,
        typer.Option(
            "--fine-tune",
            help="Fine-tune the packaged MiniLM's top layers and heads on the outcomes (needs the train extra); "
            "saves the encoder beside the classifier. See docs/classifier.md.",
        ),
    ] = False,
    layers: Annotated[
        int, typer.Option("--layers", min=1, max=6, help="With --fine-tune: MiniLM cut to its first N layers (shipped: 1).")
    ] = 1,
    unfreeze_layers: Annotated[
        int, typer.Option("--unfreeze-layers", min=1, max=6, help="With --fine-tune: top layers trained (others frozen).")
    ] = 1,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=8, max=512, help="With --fine-tune: tokens per prompt (trained and served).")
    ] = 64,
    truncation: Annotated[
        str, typer.Option("--truncation", help="With --fine-tune: head_tail (as the shipped encoder) or head.")
    ] = "head_tail",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="With --fine-tune: at most this many epochs.")] = 3,
    budget_minutes: Annotated[
        float,
        typer.Option("--budget-minutes", min=0.1, help="With --fine-tune: stop training after this many minutes."),
    ] = 15.0,
    verbose: VerboseOption = False,
) -> None:
    """Train a difficulty classifier on routing outcomes (--data, or --from-ledger) and save it to --out."""
    from classifiers.training import cross_validate_files, train

    configure_logging(verbose)
    ledger_data = None
    if from_ledger:
        ledger_data = export_ledger_data(out / "ledger-data.jsonl", redis_url, prefix, since, source, min_per_tier)
        data = [*(data or []), str(ledger_data.path)]
    if not data:
        raise ConfigError("Give --data FILE (repeatable) or --from-ledger.")
    if fine_tune:
        _train_fine_tuned(data, out, estimator, seed, data_format, skip_bad_rows, no_cache, embedding_model,
                          unfreeze_layers, max_tokens, epochs, budget_minutes, layers, truncation)
        return
    selection = cross_validate_files(
        data, _encoder(embedding_model, no_cache), model=estimator.value, folds=cv, seed=seed,
        data_format=data_format.value, skip_bad_rows=skip_bad_rows,
    )
    report = train(selection, out, store_neighbour_ids=not no_neighbour_ids)
    if ledger_data is not None:
        record_ledger_metadata(out, ledger_data.metadata(since))
    console().print(selection.loaded.summary())
    for result in selection.candidates:
        _print_result(f"{cv}-fold CV: {_describe(result.params)}", result)
    seconds = ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
    console().print(f"chosen: {_describe(selection.chosen.params)}; timings: {seconds}")
    console().print(f"saved classifier to {out}")


def _train_fine_tuned(
    data: list[str], out: Path, estimator: Estimator, seed: int, data_format: DataFormat, skip_bad_rows: bool,
    no_cache: bool, embedding_model: str | None, unfreeze_layers: int, max_tokens: int, epochs: int,
    budget_minutes: float, layers: int = 1, truncation: str = "head_tail",
) -> None:
    from classifiers.finetune import FineTuneConfig
    from classifiers.finetune_training import train_fine_tuned

    if embedding_model is not None:
        raise ConfigError("--fine-tune starts from the packaged all-MiniLM-L6-v2; drop --embedding-model.")
    config = FineTuneConfig(
        layers=layers, unfreeze_layers=unfreeze_layers, max_tokens=max_tokens, truncation=truncation, epochs=epochs,
        budget_seconds=budget_minutes * 60, seed=seed,
    ).check()
    report = train_fine_tuned(
        data, out, config, estimator="logreg" if estimator is Estimator.auto else estimator.value,
        data_format=data_format.value, skip_bad_rows=skip_bad_rows, use_cache=not no_cache,
        log=lambda line: console().print(line, style="dim"),
    )
    seconds = ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
    best = max(report.history, key=lambda h: h["valid_apgr"])
    console().print(
        f"fine-tuned on {report.rows} rows ({report.stopped_by}); best validation APGR {best['valid_apgr']:.3f} "
        f"at epoch {best['epoch']:.2f}; encoder {report.encoder_dir.name} ({report.model_bytes / 2**20:.1f} MiB); "
        f"timings: {seconds}"
    )
    console().print(f"saved classifier to {out}")


@classifier_app.command("evaluate")
@reports_errors
def evaluate_command(
    data: DataOption,
    model: Annotated[
        Path | None, typer.Option("--model", help="Saved classifier folder to evaluate (default: the shipped one).")
    ] = None,
    cv: Annotated[
        int | None, typer.Option("--cv", min=2, max=20, help="Cross-validate on --data instead of evaluating a saved model.")
    ] = None,
    estimator: Annotated[Estimator, typer.Option("--estimator", help="With --cv: which model kinds to compare.")] = Estimator.auto,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for the folds.")] = 0,
    data_format: FormatOption = DataFormat.auto,
    skip_bad_rows: SkipOption = False,
    embedding_model: EmbeddingOption = None,
    no_cache: NoCacheOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    scores_out: Annotated[
        Path | None,
        typer.Option(
            "--scores-out",
            help="With --cv: write each row's out-of-fold {id, difficulty, gain} from the best candidate "
            "(honest scores for `router policy simulate/calibrate --scores`).",
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """AUC, calibration error, APGR and CPT(50%/80%), overall and per source."""
    from classifiers.training import cross_validate_files, cv_summary, load_training_data

    configure_logging(verbose)
    if cv is not None and model is not None:
        raise typer.BadParameter("use either --model DIR (evaluate a saved classifier) or --cv K, not both")
    if scores_out is not None and cv is None:
        raise typer.BadParameter("--scores-out needs --cv K (out-of-fold scores)")
    if cv is not None:
        selection = cross_validate_files(
            data, _encoder(embedding_model, no_cache), model=estimator.value, folds=cv, seed=seed,
            data_format=data_format.value, skip_bad_rows=skip_bad_rows,
        )
        results, best = selection.candidates, selection.chosen
        if scores_out is not None:
            from classifiers.evaluation import write_out_of_fold_scores

            write_out_of_fold_scores(scores_out, selection.data.ids, best.proba)
            typer.echo(f"wrote out-of-fold scores of {_describe(best.params)} to {scores_out}", err=True)
        if as_json:
            typer.echo(json.dumps([cv_summary(r) for r in results], indent=2))
            return
        for result in results:
            _print_result(f"{cv}-fold CV: {_describe(result.params)}", result)
        return
    from classifiers.embedding_cache import EmbeddingCache
    from classifiers.evaluation import evaluate
    from classifiers.loading import load_classifier

    classifier = load_classifier(model, embedding_model=embedding_model, cache=None if no_cache else EmbeddingCache())
    _, dataset = load_training_data(data, data_format=data_format.value, skip_bad_rows=skip_bad_rows)
    evaluation = evaluate(classifier, dataset)
    if as_json:
        typer.echo(json.dumps(cv_summary(evaluation.result), indent=2))
        return
    _print_result(f"classifier {classifier.path_} on {', '.join(data)}", evaluation.result)


@classifier_app.command("score")
@reports_errors
def score_command(
    input_path: Annotated[Path, typer.Option("--input", help="JSONL with `id` and `prompt` on each row.")],
    output_path: Annotated[Path, typer.Option("--output", help="JSONL to write, one {id, difficulty} per input row.")],
    model: Annotated[Path | None, typer.Option("--model", help="Saved classifier folder (default: the shipped one).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per embedding batch.")] = 256,
    no_cache: NoCacheOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Score prompts: write each row's difficulty in input order, ids preserved."""
    from classifiers.embedding_cache import EmbeddingCache
    from classifiers.evaluation import read_score_input, score_texts
    from classifiers.loading import load_classifier

    configure_logging(verbose)
    rows = read_score_input(input_path)
    classifier = load_classifier(model, cache=None if no_cache else EmbeddingCache())
    if classifier.encoder is not None and hasattr(classifier.encoder, "show_progress"):
        classifier.encoder.show_progress = False  # one progress bar, over batches, below
    partial = output_path.with_name(output_path.name + ".partial")
    ids = [row_id for row_id, _ in rows]
    written = 0
    with partial.open("w", encoding="utf-8") as handle, tqdm(
        total=len(rows), unit="prompt", desc="scoring", disable=not sys.stderr.isatty()
    ) as progress:
        for difficulties in score_texts(classifier, [prompt for _, prompt in rows], batch_size):
            for difficulty in difficulties:
                handle.write(json.dumps({"id": ids[written], "difficulty": round(float(difficulty), 6)}) + "\n")
                written += 1
            progress.update(len(difficulties))
    partial.replace(output_path)  # the output appears whole or not at all
    console().print(f"scored {written} prompts into {output_path}")


@classifier_app.command("explain")
@reports_errors
def explain_command(
    text: Annotated[str, typer.Argument(help="The prompt to score and explain.")],
    model: Annotated[Path | None, typer.Option("--model", help="Saved classifier folder (default: the shipped one).")] = None,
    neighbours: Annotated[int, typer.Option("-k", "--neighbours", min=1, max=50, help="How many similar training examples to show.")] = 5,
    data: Annotated[
        list[str] | None, typer.Option("--data", help="Training data file(s), to show the neighbours' prompts by id.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Show a prompt's difficulty and the nearest training examples with their outcomes."""
    from classifiers.explain import explain
    from classifiers.loading import load_classifier

    configure_logging(verbose)
    classifier = load_classifier(model)
    result = explain(classifier, text, neighbours)
    prompts: dict[str, str] = {}
    if data:
        from classifiers.loaders import load_many

        prompts = {r.id: r.prompt for r in load_many(data, skip_bad_rows=True).records}
    if as_json:
        payload = {
            "text": result.text,
            "difficulty": result.difficulty,
            "success": result.success,
            "neighbours": [
                {**n.__dict__, **({"prompt": prompts[n.id]} if n.id in prompts else {})} for n in result.neighbours
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    success = ", ".join(f"{tier} {p:.2f}" for tier, p in result.success.items())
    console().print(f"difficulty {result.difficulty:.3f}  (P(correct): {success})")
    table = Table(title=f"{len(result.neighbours)} nearest training examples")
    for column in ("similarity", "id", "source", *classifier.tiers_, "prompt"):
        table.add_column(column)
    for n in result.neighbours:
        marks = ["✓" if n.success[t] >= 0.5 else "✗" for t in classifier.tiers_]
        prompt = prompts.get(n.id, "")
        table.add_row(f"{n.similarity:.3f}", n.id, n.source, *marks, prompt[:80] + ("…" if len(prompt) > 80 else ""))
    console().print(table)
