"""`router report` and `router ledger export` through typer's CliRunner, on the real Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.cli import app
from router.ledger import FORCED_RULE, LedgerConfig, SyncRedisLedger
from tests.ledger.support import make_entry

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_default_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTER_REDIS_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def filled(config: LedgerConfig) -> list[str]:
    """A day of traffic on two tiers, some graded, plus forced-tier eval records; returns the CLI's Redis options."""
    ledger = SyncRedisLedger(config)
    now = time.time()
    for i in range(60):
        tier = "fast" if i % 3 else "deep"
        ledger.record(make_entry(i, tier=tier, cost_usd=0.0002 if tier == "fast" else 0.004, timestamp=now - i * 60,
                                 difficulty=(i % 10) / 10, app=["chat", "search"][i % 2],
                                 rule=FORCED_RULE if i >= 50 else "band"))
        if i % 2:
            ledger.feedback(f"req-{i}", float(i % 10 < 6))
    ledger.record(make_entry(99, timestamp=now - 3 * 86_400))  # outside a 24h window
    ledger.close()
    return ["--redis-url", str(config.redis_url), "--prefix", config.key_prefix]


def test_help_lists_commands_and_choices() -> None:
    assert "report" in runner.invoke(app, ["--help"]).output
    report = runner.invoke(app, ["report", "--help"])
    assert report.exit_code == 0 and "tier" in report.output and "aggregates" in report.output
    export = runner.invoke(app, ["ledger", "export", "--help"])
    assert export.exit_code == 0 and "--graded-only" in export.output and "records" in export.output


def test_report_table(filled: list[str]) -> None:
    result = runner.invoke(app, ["report", *filled])
    assert result.exit_code == 0, result.output
    for text in ("requests", "share", "cost/correct", "accuracy", "fast", "deep", "total"):
        assert text in result.output
    assert "60" in result.output  # the 24h window leaves out the 3-day-old record


def test_report_json_rows_carry_cost_per_correct(filled: list[str]) -> None:
    result = runner.invoke(app, ["report", "--json", "--by", "app", "--since", "7d", *filled])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["by"] == "app" and report["total"]["requests"] == 61
    assert {row["key"] for row in report["rows"]} == {"chat", "search", "demo"}
    for row in report["rows"]:
        assert {"requests", "share", "cost_usd", "graded", "accuracy", "cost_per_correct"} <= set(row)
    search = next(row for row in report["rows"] if row["key"] == "search")
    assert search["graded"] == 30 and search["cost_per_correct"] == pytest.approx(
        search["graded_cost_usd"] / search["correct"])
    assert report["reliability"]["predicts_tier"] == "fast"
    assert "always-deep" in {p["label"] for p in report["points"]}


def test_report_from_aggregates_by_day(filled: list[str]) -> None:
    result = runner.invoke(app, ["report", "--json", "--by", "day", "--source", "aggregates", "--since", "7d", *filled])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source"] == "aggregates" and report["total"]["requests"] == 61
    assert any("UTC day" in note for note in report["notes"])


def test_report_plot_writes_a_png(filled: list[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra (matplotlib)")
    out = tmp_path / "plots" / "report.png"
    result = runner.invoke(app, ["report", "--plot", str(out), "--json", *filled])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    json.loads(result.stdout)  # the message about the file went to stderr
    assert "wrote" in result.stderr
    (tmp_path / "file").write_text("")
    blocked = runner.invoke(app, ["report", "--plot", str(tmp_path / "file" / "x.png"), *filled])
    assert blocked.exit_code == 2 and "--plot: cannot write" in blocked.output


def test_report_on_an_empty_ledger(config: LedgerConfig) -> None:
    result = runner.invoke(app, ["report", "--redis-url", str(config.redis_url), "--prefix", config.key_prefix])
    assert result.exit_code == 0, result.output
    assert "No ledger records" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since: expected a duration such as 90m"),
        (["--by", "month"], "Invalid value for '--by'"),
    ],
)
def test_report_bad_options(filled: list[str], args: list[str], message: str) -> None:
    result = runner.invoke(app, ["report", *args, *filled])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_report_needs_a_reachable_redis() -> None:
    missing = runner.invoke(app, ["report"])
    assert missing.exit_code == 2 and "--redis-url" in missing.output and "embedded ledger" in missing.output
    bad = runner.invoke(app, ["report", "--redis-url", "http://localhost"])
    assert bad.exit_code == 2 and "redis_url" in bad.output and "redis://" in bad.output
    down = runner.invoke(app, ["report", "--redis-url", "redis://127.0.0.1:1/0"])
    assert down.exit_code == 2 and "did not answer" in down.output


def test_export_records_and_outcomes_to_stdout(filled: list[str]) -> None:
    raw = runner.invoke(app, ["ledger", "export", "--format", "records", "--graded-only", *filled])
    assert raw.exit_code == 0, raw.output
    rows = [json.loads(line) for line in raw.stdout.splitlines()]
    assert len(rows) == 30 and all(row["score"] in (0.0, 1.0) for row in rows)
    assert "skipped 31 records were not graded" in raw.stderr
    one_tier = runner.invoke(app, ["ledger", "export", "--tiers", "fast", *filled])
    assert one_tier.exit_code == 0, one_tier.output
    assert all(list(json.loads(line)["outcomes"]) == ["fast"] for line in one_tier.stdout.splitlines())


def test_export_with_nothing_to_export_says_why(filled: list[str]) -> None:
    result = runner.invoke(app, ["ledger", "export", "--tiers", "fast,deep", *filled])
    assert result.exit_code == 2
    assert "Nothing to export" in result.output and "--force-tier" in result.output
