"""The train and cross-validate pipelines behind `router classifier train` and `evaluate --cv`."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.artifact import save_classifier
from classifiers.encoders import TextEncoder
from classifiers.estimator import MODEL_KINDS, DifficultyClassifier
from classifiers.loaders import LoadResult, load_many
from classifiers.selection import CANDIDATES, CrossValidation, select_model
from classifiers.targets import TrainingSet, training_set
from core.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class Selection:
    """Candidates cross-validated on loaded, embedded data, and the best of them."""

    paths: list[str]
    encoder: TextEncoder
    loaded: LoadResult
    data: TrainingSet
    embeddings: np.ndarray
    chosen: CrossValidation
    candidates: list[CrossValidation]
    folds: int
    seed: int
    seconds: dict[str, float]


@dataclass
class TrainReport:
    """What a training run did: the selection it fitted, where it saved it, and how long the fit took."""

    out: Path
    selection: Selection
    fit_seconds: float

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds per step: load, embed, cross-validate, fit."""
        return {**self.selection.seconds, "fit": self.fit_seconds}


def data_summary(data: TrainingSet, files: Sequence[str], skipped_rows: int) -> dict[str, Any]:
    """What an artifact records of the rows it was trained on: files, counts by source, their hash."""
    sources = Counter(source.split("/", 1)[0] for source in data.sources)
    return {
        "files": list(files),
        "rows": len(data.texts),
        "skipped_rows": skipped_rows,
        "rows_by_source": dict(sorted(sources.items())),
        "data_sha256": data_hash(data),
    }


def data_hash(data: TrainingSet) -> str:
    """sha256 over ids, prompts and targets in order: the same data gives the same hash in any file format."""
    digest = hashlib.sha256()
    for record_id, text, target in zip(data.ids, data.texts, data.targets, strict=True):
        digest.update(f"{record_id}\x1f{text}\x1f{','.join(f'{v:.6g}' for v in target)}\x1e".encode())
    return digest.hexdigest()


def candidates_for(model: str) -> list[dict[str, object]]:
    """The parameter sets to cross-validate: all of them for `auto`, else the named kind."""
    if model == "auto":
        return [dict(c) for c in CANDIDATES]
    if model not in MODEL_KINDS:
        raise ConfigError(f"--model must be auto or one of {', '.join(MODEL_KINDS)}; got {model!r}.")
    return [dict(c) for c in CANDIDATES if c["model"] == model]


def cv_summary(result: CrossValidation) -> dict[str, Any]:
    """JSON-ready metrics of one cross-validation."""
    summary: dict[str, Any] = {"params": result.params, "auc": result.auc}
    if result.overall is not None:
        summary["overall"] = result.overall.as_dict()
        summary["by_source"] = {group: m.as_dict() for group, m in result.by_source.items()}
    return summary


def load_training_data(paths: Sequence[str | Path], *, data_format: str, skip_bad_rows: bool) -> tuple[LoadResult, TrainingSet]:
    """Load the files and build per-tier targets, logging what was skipped."""
    loaded = load_many(paths, format=data_format, skip_bad_rows=skip_bad_rows)
    logger.info(loaded.summary())
    for bad in loaded.skipped[:20]:
        logger.warning("skipped %s", bad)
    return loaded, training_set(loaded.records)


def cross_validate_files(
    paths: Sequence[str | Path],
    encoder: TextEncoder,
    *,
    model: str = "auto",
    folds: int = 5,
    seed: int = 0,
    data_format: str = "auto",
    skip_bad_rows: bool = False,
) -> Selection:
    """Load, embed and cross-validate the candidates (all kinds for `auto`), saving nothing."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    loaded, data = load_training_data(paths, data_format=data_format, skip_bad_rows=skip_bad_rows)
    timings["load"] = time.perf_counter() - start

    start = time.perf_counter()
    embeddings = encoder.encode(data.texts)
    timings["embed"] = time.perf_counter() - start

    start = time.perf_counter()
    candidates = candidates_for(model)
    for params in candidates:
        params["random_state"] = seed
    chosen, table = select_model(embeddings, data.targets, data.sources, folds, seed, candidates)
    timings["cross_validate"] = time.perf_counter() - start
    return Selection([str(p) for p in paths], encoder, loaded, data, embeddings, chosen, table, folds, seed, timings)


def train(selection: Selection, out: Path, *, store_neighbour_ids: bool = True) -> TrainReport:
    """Fit the chosen candidate on all rows and save the artifact with its cross-validation metrics."""
    start = time.perf_counter()
    data, chosen = selection.data, selection.chosen
    classifier = DifficultyClassifier(selection.encoder, **chosen.params).fit_embeddings(  # type: ignore[arg-type]
        selection.embeddings, data.targets, data.tiers
    )
    report = TrainReport(out, selection, time.perf_counter() - start)

    save_classifier(
        classifier,
        out,
        label_definition=data.label_definition,
        training={
            **data_summary(data, selection.paths, len(selection.loaded.skipped)),
            "tier_success_rate": dict(zip(data.tiers, np.round(data.targets.mean(axis=0), 4).tolist(), strict=True)),
            "folds": selection.folds,
            "seed": selection.seed,
            "seconds": {k: round(v, 2) for k, v in report.seconds.items()},
        },
        cv_metrics={"chosen": cv_summary(chosen), "candidates": [cv_summary(c) for c in selection.candidates]},
        neighbour_ids=data.ids if store_neighbour_ids else None,
        neighbour_sources=data.sources if store_neighbour_ids else None,
    )
    return report
