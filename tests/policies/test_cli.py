"""`router policy ...` through typer's CliRunner: exit codes, messages, figures, --help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.cli import app
from tests.conftest import synthetic_outcomes
from tests.conftest import write_jsonl as conftest_write_jsonl
from tests.policies.support import TWO_TIERS, five_outcomes, five_scores, line_of, write_jsonl

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    config = tmp_path / "router.yaml"
    config.write_text(TWO_TIERS)
    return {
        "config": config,
        "data": write_jsonl(tmp_path / "outcomes.jsonl", five_outcomes()),
        "scores": write_jsonl(tmp_path / "scores.jsonl", five_scores()),
    }


@pytest.mark.parametrize("command", ["check", "explain", "simulate", "calibrate"])
def test_help(command: str) -> None:
    result = runner.invoke(app, ["policy", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_group_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["policy", "--help"])
    assert result.exit_code == 0
    for command in ("check", "explain", "simulate", "calibrate"):
        assert command in result.output


def test_check_valid(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["policy", "check", str(files["config"])])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{files['config']}: valid (version ")
    assert "2 tiers: weak, strong; 3 rules" in result.output


def test_check_invalid_lists_path_and_line(files: dict[str, Path]) -> None:
    text = TWO_TIERS.replace("tier: strong", "tier: stronk").replace(
        "backend: litellm", "backend: lite", 1
    )
    files["config"].write_text(text)
    result = runner.invoke(app, ["policy", "check", str(files["config"])])
    assert result.exit_code == 1
    assert f"{files['config']}: 1 problem(s)" in result.stderr
    assert (
        f"tiers[0].backend: must be 'litellm' or 'local' (got 'lite') ({files['config']} line "
        f"{line_of(text, 'backend: lite')})"
    ) in result.stderr
    assert "Traceback" not in result.output


def test_check_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "no such policy file" in result.stderr


def test_check_defaults_to_router_yaml_here(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(files["config"].parent)
    result = runner.invoke(app, ["policy", "check"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("router.yaml: valid")


def test_explain_with_given_difficulty(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "explain",
            "Prove it.",
            "--config",
            str(files["config"]),
            "--difficulty",
            "0.75",
        ],
    )
    assert result.exit_code == 0, result.output
    for text in (
        "0.7500 (given with --difficulty)",
        "rule           hard",
        "tier           strong: litellm test/strong",
        "strategy       direct",
        "difficulty 0.750; rule 'hard': difficulty in [0.5, 1]",
        "budget         allow: no budget is set",
    ):
        assert text in result.output


def test_explain_rejects_bad_input(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app, ["policy", "explain", "q", "-c", str(files["config"]), "--difficulty", "1.5"]
    )
    assert result.exit_code == 2
    result = runner.invoke(
        app,
        [
            "policy",
            "explain",
            "q",
            "-c",
            str(files["config"]),
            "--difficulty",
            "0.5",
            "-m",
            "novalue",
        ],
    )
    assert result.exit_code == 2
    assert "error: --metadata takes KEY=VALUE, got 'novalue'." in result.stderr


def test_explain_with_an_invalid_policy_is_a_clean_error(files: dict[str, Path]) -> None:
    files["config"].write_text(TWO_TIERS.replace("tier: strong", "tier: stronk"))
    result = runner.invoke(
        app, ["policy", "explain", "q", "-c", str(files["config"]), "--difficulty", "0.5"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: rules[1].tier: no tier named 'stronk'")


def test_simulate_json_figures(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "simulate",
            "--data",
            str(files["data"]),
            "--config",
            str(files["config"]),
            "--scores",
            str(files["scores"]),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["policy"]
    assert report["mapping"] == {"weak": "weak", "strong": "strong"}
    assert report["mapping_method"] == "by name"
    results = {r["name"]: r for r in report["results"]}
    assert results["policy"]["accuracy"] == pytest.approx(0.8)
    assert results["policy"]["cost_per_correct_usd"] == pytest.approx(0.008)
    assert results["always-strongest"]["cost_per_correct_usd"] == pytest.approx(0.05 / 3)
    assert results["oracle"]["total_cost_usd"] == pytest.approx(0.023)
    assert results["random"]["accuracy"] == pytest.approx(0.52)


def test_simulate_table_prints_mapping_and_baselines(files: dict[str, Path]) -> None:
    renamed = TWO_TIERS.replace("name: weak", "name: fast").replace("tier: weak", "tier: fast")
    files["config"].write_text(
        renamed.replace("name: strong", "name: deep").replace("tier: strong", "tier: deep")
    )
    result = runner.invoke(
        app,
        [
            "policy",
            "simulate",
            "--data",
            str(files["data"]),
            "-c",
            str(files["config"]),
            "--scores",
            str(files["scores"]),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mapping (by cost order; difficulty: scores from" in result.output
    assert "fast -> weak, deep -> strong" in result.output
    for name in (
        "policy",
        "always-cheapest",
        "always-strongest",
        "random",
        "oracle",
        "share fast",
        "cost per correct",
    ):
        assert name in result.output
    assert "$0.008000" in result.output  # the policy's cost per correct answer


def test_simulate_against_another_policy(files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "edited.yaml"
    other.write_text(TWO_TIERS.replace("0.50", "0.85"))
    args = [
        "policy",
        "simulate",
        "--data",
        str(files["data"]),
        "-c",
        str(files["config"]),
        "--against",
        str(other),
        "--scores",
        str(files["scores"]),
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["difference"]["accuracy"] == pytest.approx(-0.4)
    assert out["difference"]["total_cost_usd"] == pytest.approx(-0.018)
    text = runner.invoke(app, args)
    assert text.exit_code == 0
    assert f"{other} minus {files['config']}" in text.output
    assert "accuracy -0.4000, total cost $-0.0180" in text.output


def test_simulate_explicit_map(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "simulate",
            "--data",
            str(files["data"]),
            "-c",
            str(files["config"]),
            "--scores",
            str(files["scores"]),
            "--map",
            "weak=strong",
            "--map",
            "strong=weak",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["policy"]
    assert report["mapping_method"] == "explicit"
    assert report["mapping"] == {"weak": "strong", "strong": "weak"}
    bad = runner.invoke(
        app,
        [
            "policy",
            "simulate",
            "--data",
            str(files["data"]),
            "-c",
            str(files["config"]),
            "--scores",
            str(files["scores"]),
            "--map",
            "weak",
        ],
    )
    assert bad.exit_code == 2
    assert "error: --map takes TIER=COLUMN, got 'weak'." in bad.stderr


def test_simulate_with_missing_scores_is_a_clean_error(files: dict[str, Path]) -> None:
    write_jsonl(files["scores"], five_scores()[1:])
    result = runner.invoke(
        app,
        [
            "policy",
            "simulate",
            "--data",
            str(files["data"]),
            "-c",
            str(files["config"]),
            "--scores",
            str(files["scores"]),
        ],
    )
    assert result.exit_code == 2
    assert "has no difficulty for 1 of 5 records (first: a)" in result.stderr


def test_calibrate_prints_curve_and_choice(files: dict[str, Path]) -> None:
    before = files["config"].read_text()
    result = runner.invoke(
        app,
        [
            "policy",
            "calibrate",
            "--data",
            str(files["data"]),
            "-c",
            str(files["config"]),
            "--scores",
            str(files["scores"]),
            "--target-quality",
            "0.95",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trade-off" in result.output
    assert "0.8 *" in result.output
    assert (
        "chosen thresholds 0.8: quality 1.0000, strong share 40.0%, $4.6000 per 1k" in result.output
    )
    assert "current thresholds 0.5: quality 1.3333" in result.output
    assert "run again with --write" in result.output
    assert files["config"].read_text() == before


def test_calibrate_write_updates_only_the_thresholds(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "calibrate",
            "--data",
            str(files["data"]),
            "-c",
            str(files["config"]),
            "--scores",
            str(files["scores"]),
            "--max-cost-per-1k",
            "7",
            "--write",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["chosen"]["thresholds"] == [0.6]
    assert out["written_version"] is not None
    assert files["config"].read_text() == TWO_TIERS.replace("0.50", "0.6")


def test_calibrate_needs_exactly_one_target(files: dict[str, Path]) -> None:
    base = [
        "policy",
        "calibrate",
        "--data",
        str(files["data"]),
        "-c",
        str(files["config"]),
        "--scores",
        str(files["scores"]),
    ]
    for extra in ([], ["--target-quality", "0.9", "--max-cost-per-1k", "5"]):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2
        assert "Give exactly one of --target-quality" in result.stderr


def test_calibrate_unreachable_target(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "calibrate",
            "--data",
            str(files["data"]),
            "-c",
            str(files["config"]),
            "--scores",
            str(files["scores"]),
            "--max-cost-per-1k",
            "0.1",
        ],
    )
    assert result.exit_code == 2
    assert "No thresholds cost at most $0.1 per 1k queries" in result.stderr


@pytest.fixture(scope="module")
def with_classifier(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A classifier trained by `router classifier train` (real MiniLM), named by a relative path
    in a policy file beside it."""
    folder = tmp_path_factory.mktemp("policy-with-classifier")
    data = conftest_write_jsonl(folder / "outcomes.jsonl", synthetic_outcomes(repeats=3))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROUTER_CACHE_DIR", str(folder / "cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        trained = runner.invoke(
            app,
            [
                "classifier",
                "train",
                "--data",
                str(data),
                "--out",
                str(folder / "clf"),
                "--cv",
                "2",
                "--estimator",
                "logreg",
            ],
        )
    assert trained.exit_code == 0, trained.output
    config = folder / "router.yaml"
    config.write_text("classifier:\n  path: clf\n" + TWO_TIERS)
    return {"config": config, "data": data}


def test_explain_and_simulate_score_with_the_policys_classifier(
    with_classifier: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(with_classifier["config"].parent.parent)  # the relative path is the file's
    config = str(with_classifier["config"])
    hard = "Prove a deep open theorem about the Hodge conjecture in full rigour. (variant 1)"
    explained = runner.invoke(app, ["policy", "explain", hard, "--config", config])
    assert explained.exit_code == 0, explained.output
    assert f"classifier {with_classifier['config'].parent / 'clf'}" in explained.output
    assert "rule           hard" in explained.output
    simulated = runner.invoke(
        app, ["policy", "simulate", "--data", str(with_classifier["data"]), "-c", config, "--json"]
    )
    assert simulated.exit_code == 0, simulated.output
    report = json.loads(simulated.stdout)["policy"]
    assert report["difficulty_source"].startswith("classifier ")
    assert report["records"] == 60


def test_check_says_how_tiers_serve_tools_audio_and_images(tmp_path: Path) -> None:
    config = tmp_path / "router.yaml"
    config.write_text(
        TWO_TIERS.replace(
            "    model: test/strong\n",
            "    model: test/strong\n    audio: true\n    strategy: {type: self_consistency, n: 3}\n",
        ).replace("    model: test/weak\n", "    model: test/weak\n    strategy: {type: verify}\n")
    )
    result = runner.invoke(app, ["policy", "check", str(config)])
    assert result.exit_code == 0, result.output
    notes = [line.strip() for line in result.output.splitlines() if line.strip().startswith("note:")]
    assert notes == [
        "note: tier 'weak' (verify): requests with tools or response_format are answered by one direct call",
        "note: tier 'strong' (self_consistency n=3, chain of thought): votes over tool calls and JSON answers "
        "count their canonical form",
        "note: tier 'strong' (self_consistency n=3, chain of thought): audio output is answered by one direct call",
        "note: no tier has `vision: true`: requests that need it get a 400",
        "note: no tier has `files: true`: requests that need it get a 400",
    ]
