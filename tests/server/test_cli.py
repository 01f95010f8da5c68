"""`router serve`: help text, and a bad policy stops it with the problem, before anything loads."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from router.cli import app

runner = CliRunner()


def test_serve_help_lists_every_option() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--config", "--host", "--port", "--workers", "--redis-url", "--access-log", "--log-level"):
        assert option in result.output
    assert "critical" in result.output and "debug" in result.output


def test_serve_refuses_a_missing_policy_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such policy file" in result.output


def test_serve_refuses_an_invalid_policy_with_its_path_and_line(tmp_path: Path) -> None:
    config = tmp_path / "router.yaml"
    config.write_text("tiers:\n  - {name: a, backend: local, model: m}\nrules:\n  - {name: default, tier: b}\n")
    result = runner.invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "rules[0].tier" in result.output and "line 4" in result.output


def test_serve_rejects_a_bad_port() -> None:
    result = runner.invoke(app, ["serve", "--port", "70000"])
    assert result.exit_code == 2
    assert "65535" in result.output
