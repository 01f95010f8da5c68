"""Quiet, quick tools: `router --version`, third-party noise behind -v, estimates and progress for long commands."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from policies import load_policy
from router.cli import app
from router.cli._common import configure_logging
from router.cli._progress import EMBED_CHUNK, Progress, ProgressEncoder
from router.cli.eval import _estimate
from router.evals import load_questions
from router.evals.runner import POLICY_RUN, tier_run
from tests.conftest import REPO, HashEncoder
from tests.server.support import write_policy


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"router (difficulty-router) {version('difficulty-router')}"


def test_third_party_info_is_hidden_unless_verbose() -> None:
    try:
        configure_logging(verbose=False)
        assert not logging.getLogger("sentence_transformers.base.model").isEnabledFor(logging.INFO)
        assert logging.getLogger("router.server.runtime").isEnabledFor(logging.INFO)
        assert not logging.getLogger("router.server.runtime").isEnabledFor(logging.DEBUG)
        configure_logging(verbose=True)
        assert logging.getLogger("sentence_transformers.base.model").isEnabledFor(logging.INFO)
        assert logging.getLogger("classifiers.encoders").isEnabledFor(logging.DEBUG)
    finally:
        configure_logging(verbose=False)


def test_a_command_that_loads_the_classifier_prints_no_third_party_noise() -> None:
    """The real shipped classifier and encoder, in a process of its own (as a user runs it)."""
    command = [sys.executable, "-m", "router", "policy", "explain", "What is 2+2?", "--config", str(REPO / "router.yaml")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "rule" in done.stdout
    noise = [line for line in done.stderr.splitlines() if line.startswith("INFO") and " router" not in line]
    assert not noise, done.stderr
    assert "Loading weights" not in done.stderr and "Batches" not in done.stderr


def test_progress_off_a_terminal_prints_a_line_every_tenth(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(20, "eval", "answers") as progress:
        for _ in range(20):
            progress.update()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("eval: 2/20 answers in ") and "left" in lines[0]
    assert lines[-1].startswith("eval: 20/20 answers in ") and "left" not in lines[-1]


def test_progress_encoder_estimates_then_embeds_in_chunks(capsys: pytest.CaptureFixture[str]) -> None:
    inner = HashEncoder()
    texts = [f"question number {i}" for i in range(EMBED_CHUNK * 3 + 5)]
    wrapped = ProgressEncoder(inner, "embedding")
    vectors = wrapped.encode(texts)
    np.testing.assert_allclose(vectors, HashEncoder().encode(texts), rtol=1e-6)
    assert inner.calls == 4 and wrapped.name == inner.name  # other attributes are the inner encoder's
    err = capsys.readouterr().err
    assert f"embedding {len(texts):,} texts: the first {EMBED_CHUNK} took" in err and "for the rest" in err
    assert f"embedding: {len(texts)}/{len(texts)} texts" in err
    wrapped.encode(texts[:10])
    assert capsys.readouterr().err == ""  # small calls pass straight through


def _questions(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(n)))
    return path


def test_eval_estimate_for_local_tiers_is_generation_time(tmp_path: Path) -> None:
    policy = load_policy(REPO / "router.yaml")
    questions = load_questions(_questions(tmp_path, 4), None)
    runs = [POLICY_RUN, *(tier_run(t) for t in policy.tier_names)]
    text = _estimate(policy, questions, runs, {q.id: 0.9 for q in questions}, tmp_path / "out.jsonl")
    assert text.startswith("estimate: 12 answers, expected cost $")
    assert "local tiers about" in text and "up to" in text and "hosted" not in text
    fast_only = _estimate(policy, questions, [tier_run("fast")], {}, tmp_path / "out.jsonl")
    deep_only = _estimate(policy, questions, [tier_run("deep")], {}, tmp_path / "out.jsonl")
    assert fast_only != deep_only


def test_eval_estimate_for_hosted_tiers_names_them(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path / "router.yaml"))
    questions = load_questions(_questions(tmp_path, 3), None)
    (tmp_path / "out.jsonl").write_text("")
    text = _estimate(policy, questions, [tier_run("deep")], {}, tmp_path / "out.jsonl")
    assert "3 answers (" in text and "exists" in text
    assert "3 answers on hosted tiers" in text and "local tiers" not in text
