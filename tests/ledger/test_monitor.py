"""`router report --sources`: per tier and UTC day, each verdict source on its own, predicted vs observed success."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.cli import app
from router.ledger import LedgerConfig, SyncRedisLedger
from router.ledger.memory import MemoryLedger
from router.ledger.monitor import monitor_from_records
from router.ledger.report import build_report
from tests.ledger.support import make_entry

NOW = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC
DAY = 86_400


def two_days() -> MemoryLedger:
    """Two days of fast (cheap) and deep traffic; verdicts from the app, the judge and agreement."""
    ledger = MemoryLedger(LedgerConfig(), clock=lambda: NOW)
    rows = [
        # id, day offset, tier, cost, difficulty, verdicts
        ("a", 1, "fast", 0.001, 0.2, {"judge": 1.0}),
        ("b", 1, "fast", 0.001, 0.4, {"judge": 0.0, "feedback": 1.0}),
        ("c", 1, "fast", 0.001, 0.6, {}),
        ("d", 1, "deep", 0.01, 0.9, {"judge": 1.0, "agreement": 1.0}),
        ("e", 0, "fast", 0.001, 0.1, {"judge": 0.0}),
        ("f", 0, "fast", 0.001, None, {"judge": 1.0}),
    ]
    for request_id, days_ago, tier, cost, difficulty, verdicts in rows:
        ledger.record_sync(make_entry(0, request_id=request_id, tier=tier, cost_usd=cost, difficulty=difficulty,
                                      timestamp=NOW - days_ago * DAY - 60))
        for source, score in verdicts.items():
            assert ledger.feedback_sync(request_id, score, source=source)
    return ledger


def test_each_source_on_its_own_per_tier_and_day() -> None:
    monitor = monitor_from_records(two_days().records(), None, NOW)
    assert monitor.predicts_tier == "fast"
    keys = [(row.day, row.tier) for row in monitor.rows]
    assert keys == [("2025-06-14", "fast"), ("2025-06-14", "deep"), ("2025-06-15", "fast")]
    fast = monitor.rows[0]
    assert (fast.requests, fast.graded, round(fast.graded_share, 4)) == (3, 2, 0.6667)
    judge, feedback = fast.sources["judge"], fast.sources["feedback"]
    # b counts in both sources with its own verdict: judge 1 of 2 right, the app 1 of 1.
    assert (judge.graded, judge.correct, feedback.graded, feedback.correct) == (2, 1.0, 1, 1.0)
    assert judge.cost_per_correct == pytest.approx(0.002)
    assert judge.predicted == pytest.approx(0.7)  # mean(1 - 0.2, 1 - 0.4)
    assert judge.drift == pytest.approx(0.5 - 0.7)
    assert [s["source"] for s in monitor.rows[1].as_dict()["sources"]] == ["judge", "agreement"]  # rank order
    today = monitor.rows[2].sources["judge"]
    # f has no difficulty: it counts in the accuracy, not in predicted vs observed.
    assert (today.graded, today.correct, today.predicted_n) == (2, 1.0, 1)
    assert today.predicted == pytest.approx(0.9) and today.drift == pytest.approx(0.0 - 0.9)
    accuracy = today.as_dict()["accuracy"]
    assert accuracy["value"] == 0.5 and 0 < accuracy["low"] < 0.5 < accuracy["high"] < 1


def test_the_plain_report_names_the_sources_it_used() -> None:
    report = build_report(two_days(), "tier", None, NOW)
    assert any("Verdicts used" in n and "feedback 1, judge 4" in n for n in report.notes), report.notes


@pytest.fixture
def filled(config: LedgerConfig) -> list[str]:
    ledger = SyncRedisLedger(config)
    # Seconds apart inside one UTC day: `--sources` has a row per tier and day, and a fixture
    # spread over 20 minutes split in two just after midnight.
    now = time.time()
    base = now if now % 86_400 > 60 else now - 120
    for i in range(20):
        tier = "fast" if i % 2 else "deep"
        ledger.record(make_entry(i, tier=tier, cost_usd=0.0002 if tier == "fast" else 0.004, timestamp=base - i,
                                 difficulty=(i % 10) / 10))
        ledger.feedback(f"req-{i}", float(i % 3 != 0), "judge")
        if i % 4 == 1:
            ledger.feedback(f"req-{i}", 1.0, "agreement")
    ledger.close()
    return ["--redis-url", str(config.redis_url), "--prefix", config.key_prefix]


def test_cli_sources_json_table_and_plot(filled: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--sources", "--json", *filled])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["predicts_tier"] == "fast"
    fast = next(row for row in view["rows"] if row["tier"] == "fast")
    sources = {s["source"]: s for s in fast["sources"]}
    assert (fast["requests"], fast["graded"], set(sources)) == (10, 10, {"judge", "agreement"})
    assert sources["agreement"]["graded"] == 5 and sources["agreement"]["accuracy"]["value"] == 1.0
    assert sources["judge"]["accuracy"]["value"] == pytest.approx(sum(i % 3 != 0 for i in range(1, 20, 2)) / 10)

    table = runner.invoke(app, ["report", "--sources", *filled])
    assert table.exit_code == 0 and "agreement" in table.output and "drift" in table.output

    pytest.importorskip("matplotlib", reason="--plot needs the plot extra (matplotlib)")
    out = tmp_path / "drift.png"
    plotted = runner.invoke(app, ["report", "--sources", "--plot", str(out), *filled])
    assert plotted.exit_code == 0, plotted.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {out}" in plotted.output
