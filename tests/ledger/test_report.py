"""Report figures, by hand on small ledgers: shares, accuracy, cost per correct answer, points, reliability."""

from __future__ import annotations

import time

import pytest

from core.errors import ConfigError
from router.ledger import FORCED_RULE, LedgerConfig, MemoryLedger, SyncRedisLedger
from router.ledger.report import build_report, parse_since, reliability
from tests.ledger.support import make_entry

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86_400), ("90m", 5_400), ("7d", 604_800), ("2w", 1_209_600), ("1.5h", 5_400), (" 30s ", 30), ("12H", 43_200)],
)
def test_since_durations(text: str, seconds: int) -> None:
    assert parse_since(text, NOW) == NOW - seconds


def test_since_all_and_iso_dates() -> None:
    assert parse_since("all", NOW) is None
    assert parse_since("2025-01-31", NOW) == 1_738_281_600.0  # midnight UTC
    assert parse_since("2025-01-31T01:00:00+01:00", NOW) == 1_738_281_600.0


@pytest.mark.parametrize(
    ("text", "message"),
    [("yesterday", "duration such as 90m"), ("0h", "more than zero"), ("-5h", "duration such as"),
     ("2030-01-01", "in the future"), ("24 hours", "duration such as")],
)
def test_bad_since_says_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--since") as caught:
        parse_since(text, NOW)
    assert message in str(caught.value)


def small_ledger() -> MemoryLedger:
    """fast: 3 requests at $0.001 (verdicts 1, 0, none); deep: 1 at $0.01 (verdict 1); forced deep: 1 at $0.01 (0)."""
    ledger = MemoryLedger(LedgerConfig(), clock=lambda: NOW)
    rows = [
        ("a", "fast", 0.001, 1.0, 0.1, "easy"),
        ("b", "fast", 0.001, 0.0, 0.8, "easy"),
        ("c", "fast", 0.001, None, 0.3, "easy"),
        ("d", "deep", 0.01, 1.0, 0.9, "hard"),
        ("e", "deep", 0.01, 0.0, 0.9, FORCED_RULE),
    ]
    for request_id, tier, cost, score, difficulty, rule in rows:
        ledger.record_sync(make_entry(0, request_id=request_id, tier=tier, cost_usd=cost, difficulty=difficulty,
                                      rule=rule, timestamp=NOW - 60, app="chat" if tier == "fast" else None))
        if score is not None:
            ledger.feedback_sync(request_id, score)
    return ledger


def test_rows_by_tier_define_cost_per_correct_on_graded_requests() -> None:
    report = build_report(small_ledger(), "tier", NOW - 3600, NOW)
    rows = {row.key: row.as_dict() for row in report.rows}
    assert [row.key for row in report.rows] == ["fast", "deep"]  # cheapest first
    fast, deep, total = rows["fast"], rows["deep"], report.total.as_dict()
    assert (fast["requests"], fast["share"], fast["cost_usd"], fast["graded"], fast["accuracy"]) == (3, 0.6, 0.003, 2, 0.5)
    assert fast["cost_per_correct"] == pytest.approx(0.002)  # $0.002 of graded requests / 1 correct
    assert deep["cost_per_correct"] == pytest.approx(0.02)  # $0.02 / 1 correct
    assert (total["requests"], total["graded"], total["correct"]) == (5, 4, 2.0)
    assert total["cost_per_correct"] == pytest.approx(0.011)  # $0.022 / 2
    assert len(report.notes) == 1 and "Verdicts used" in report.notes[0] and ": feedback 4." in report.notes[0]


def test_points_separate_the_policy_from_forced_tiers() -> None:
    report = build_report(small_ledger(), "tier", None, NOW)
    points = {p.label: p.as_dict() for p in report.points}
    assert set(points) == {"tier fast", "tier deep", "policy", "always-deep"}
    assert points["policy"]["requests"] == 4 and points["policy"]["accuracy"] == pytest.approx(2 / 3)
    assert points["always-deep"]["accuracy"] == 0.0 and points["always-deep"]["cost_per_request"] == 0.01
    assert report.reliability_tier == "fast"


def test_other_groupings_and_empty_windows() -> None:
    ledger = small_ledger()
    by_app = {row.key: row.counts.requests for row in build_report(ledger, "app", None, NOW).rows}
    assert by_app == {"chat": 3, "(none)": 2}
    by_day = build_report(ledger, "day", None, NOW)
    assert [row.key for row in by_day.rows] == ["2025-06-15"]
    empty = build_report(ledger, "policy", NOW - 10, NOW)
    assert empty.rows == [] and empty.total.counts.requests == 0
    assert empty.as_dict()["total"]["cost_per_correct"] is None


def test_no_correct_answer_means_no_cost_per_correct_and_a_note_when_nothing_is_graded() -> None:
    ledger = MemoryLedger(LedgerConfig(), clock=lambda: NOW)
    ledger.record_sync(make_entry(1, timestamp=NOW - 5))
    report = build_report(ledger, "tier", None, NOW)
    assert report.rows[0].as_dict()["cost_per_correct"] is None
    assert any("No request in the window is graded" in note for note in report.notes)
    ledger.feedback_sync("req-1", 0.0)
    assert build_report(ledger, "tier", None, NOW).rows[0].as_dict()["cost_per_correct"] is None


def test_reliability_bins_and_calibration_error() -> None:
    ledger = MemoryLedger(LedgerConfig(), clock=lambda: NOW)
    # difficulty 0.1: 1 of 10 fails (calibrated); difficulty 0.9: 5 of 10 fail (0.4 off).
    for i in range(20):
        ledger.record_sync(make_entry(i, difficulty=0.1 if i < 10 else 0.9, timestamp=NOW - 1))
        ledger.feedback_sync(f"req-{i}", 0.0 if i in (0, 10, 11, 12, 13, 14) else 1.0)
    diagram = reliability(ledger.records(), "fast")
    assert diagram is not None
    assert [(b["n"], b["observed"]) for b in diagram.bins] == [(10, 0.1), (10, 0.5)]
    assert diagram.ece == pytest.approx(0.2)
    assert reliability(ledger.records(), "deep") is None


def test_aggregates_source_matches_records_over_whole_days(config: LedgerConfig) -> None:
    ledger = SyncRedisLedger(config)
    now = time.time()
    for i in range(40):
        ledger.record(make_entry(i, tier=["fast", "deep"][i % 2], timestamp=now - (i % 3) * 86_400))
        if i % 3:
            ledger.feedback(f"req-{i}", (i % 5) / 4)
    for by in ("tier", "day"):
        exact = build_report(ledger, by, None, now + 1).as_dict()
        daily = build_report(ledger, by, now - 3 * 86_400, now + 1, source="aggregates").as_dict()
        assert daily["rows"] == exact["rows"] and daily["total"] == exact["total"]
    all_time = build_report(ledger, "tier", None, now + 1, source="aggregates").as_dict()
    assert all_time["rows"] == build_report(ledger, "tier", None, now + 1).as_dict()["rows"]
    ledger.close()


def test_by_key_and_by_rule_from_records_not_aggregates() -> None:
    ledger = small_ledger()
    ledger.record_sync(make_entry(0, request_id="f", tier="fast", cost_usd=0.002, rule="easy", timestamp=NOW - 60,
                                  key_tag="support-bot"))
    by_key = {row.key: (row.counts.requests, row.counts.cost_usd) for row in build_report(ledger, "key", None, NOW).rows}
    assert by_key == {"anonymous": (5, pytest.approx(0.023)), "support-bot": (1, pytest.approx(0.002))}
    by_rule = {row.key: row.counts.requests for row in build_report(ledger, "rule", None, NOW).rows}
    assert by_rule == {"easy": 4, "hard": 1, FORCED_RULE: 1}
    with pytest.raises(ConfigError, match="--by key needs --source records"):
        build_report(ledger, "key", None, NOW, source="aggregates")
