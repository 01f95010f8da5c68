"""Ledger -> routing-outcome rows -> the real loaders and `router classifier train` (the retraining loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from classifiers.loaders import load_records
from classifiers.targets import training_set
from router.cli import app
from core.errors import ConfigError
from router.ledger import FORCED_RULE, LedgerConfig, MemoryLedger, SyncRedisLedger
from router.ledger.export import outcome_rows, record_rows, write_jsonl
from tests.conftest import synthetic_outcomes
from tests.ledger.support import make_entry

runner = CliRunner()
COST = {"weak": 0.0001, "strong": 0.003}


def eval_style(ledger: SyncRedisLedger | MemoryLedger, rows: list[dict[str, object]]) -> None:
    """What `router eval --force-tier T` leaves per tier: a forced, graded record with its prompt."""
    record = ledger.record if isinstance(ledger, SyncRedisLedger) else ledger.record_sync
    feedback = ledger.feedback if isinstance(ledger, SyncRedisLedger) else ledger.feedback_sync
    n = 0
    for row in rows:
        outcomes = row["outcomes"]
        assert isinstance(outcomes, dict)
        for tier, outcome in outcomes.items():
            n += 1
            record(make_entry(n, request_id=f"eval-{n}", tier=tier, rule=FORCED_RULE, cost_usd=COST[tier],
                              prompt=row["prompt"], source=row["source"], models=(f"{tier}-model",)))
            feedback(f"eval-{n}", float(outcome["correct"]))


def memory() -> MemoryLedger:
    return MemoryLedger(LedgerConfig(store_prompts=True))


def test_rows_group_tiers_by_prompt_cheapest_first(tmp_path: Path) -> None:
    ledger = memory()
    eval_style(ledger, synthetic_outcomes(repeats=1))
    ledger.record_sync(make_entry(900, request_id="live-1", tier="weak", cost_usd=0.0001))  # ungraded
    ledger.record_sync(make_entry(901, request_id="live-2", tier="weak", prompt=None, cost_usd=0.0001))
    ledger.feedback_sync("live-2", 1.0)  # graded, but no prompt was stored
    ledger.record_sync(make_entry(902, request_id="live-3", tier="weak", prompt="only weak saw this", cost_usd=0.0001))
    ledger.feedback_sync("live-3", 1.0)
    rows, summary = outcome_rows(ledger.records())
    assert summary.tiers == ["weak", "strong"] and summary.rows == len(rows) == 20
    assert summary.skipped == {"ungraded": 1, "no_prompt": 1, "missing_tier": 1}
    text = "\n".join(summary.lines())
    assert "store_prompts" in text and "--force-tier" in text and "exported 20 rows" in text
    first = rows[0]
    assert list(first["outcomes"]) == ["weak", "strong"]
    assert first["outcomes"]["weak"] == {"correct": 1.0, "model": "weak-model", "input_tokens": 11,
                                         "output_tokens": 21, "cost_usd": 0.0001, "latency_s": 0.26}
    assert first["id"] == "eval-1" and first["metadata"]["request_ids"] == ["eval-1", "eval-2"]
    path = tmp_path / "export.jsonl"
    with path.open("w") as handle:
        write_jsonl(rows, handle)
    loaded = load_records(path)
    assert len(loaded.records) == 20 and not loaded.skipped
    assert training_set(loaded.records).tiers == ["weak", "strong"]


def test_one_tier_exports_and_repeated_verdicts_average() -> None:
    ledger = memory()
    for n, score in enumerate([1.0, 0.0, 1.0, 1.0]):
        ledger.record_sync(make_entry(n, request_id=f"r{n}", tier="weak", prompt="same prompt", source="app"))
        ledger.feedback_sync(f"r{n}", score)
    ledger.record_sync(make_entry(9, request_id="s", tier="strong", prompt="other", source="app"))
    ledger.feedback_sync("s", 1.0)
    rows, summary = outcome_rows(ledger.records(), ["weak"])
    assert len(rows) == 1 and rows[0]["outcomes"]["weak"]["correct"] == 0.75
    assert summary.skipped == {"other_tier": 1}
    with pytest.raises(ConfigError, match="--tiers"):
        outcome_rows(ledger.records(), ["weak", "weak"])


def test_raw_records_keep_every_field_and_the_verdict() -> None:
    ledger = memory()
    ledger.record_sync(make_entry(1))
    ledger.record_sync(make_entry(2))
    ledger.feedback_sync("req-2", 0.5)
    rows, _ = record_rows(ledger.records(), graded_only=False)
    assert [(r["request_id"], r["score"]) for r in rows] == [("req-1", None), ("req-2", 0.5)]
    graded, summary = record_rows(ledger.records(), graded_only=True)
    assert len(graded) == 1 and summary.skipped == {"ungraded": 1}


def test_export_then_train_round_trip(config: LedgerConfig, tmp_path: Path) -> None:
    ledger = SyncRedisLedger(config)
    eval_style(ledger, synthetic_outcomes(repeats=2))
    for i in range(5):  # live traffic, never graded: skipped and counted
        ledger.record(make_entry(500 + i, tier="weak"))
    ledger.close()
    exported = tmp_path / "export.jsonl"
    result = runner.invoke(app, ["ledger", "export", "--format", "jsonl", "--graded-only", "--output", str(exported),
                                 "--redis-url", str(config.redis_url), "--prefix", config.key_prefix])
    assert result.exit_code == 0, result.output
    assert "exported 40 rows with tiers weak, strong" in result.stderr
    assert "skipped 5 records were not graded" in result.stderr
    assert len(exported.read_text().splitlines()) == 40
    out = tmp_path / "clf"
    trained = runner.invoke(app, ["classifier", "train", "--data", str(exported), "--out", str(out), "--cv", "3",
                                  "--estimator", "logreg"])
    assert trained.exit_code == 0, trained.output
    info = json.loads((out / "classifier.json").read_text())
    assert info["tiers"] == ["weak", "strong"] and info["training"]["rows"] == 40
