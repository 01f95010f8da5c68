"""The two-stage score's settings, and the cuts a policy hands its scorer: every score where a rule's verdict changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import PolicyError
from policies import load_policy, parse_policy
from tests.policies.support import THREE_TIERS, TWO_TIERS

WITH_CONDITION = TWO_TIERS.replace(
    "rules:\n",
    "rules:\n  - name: support\n    when: {metadata: {app: support}, difficulty: {min: 0.8}}\n    tier: strong\n",
)


def with_first_stage(text: str, section: str) -> str:
    return "classifier:\n  score: gain\n" + section + text


def test_cuts_are_every_difficulty_edge_inside_0_1() -> None:
    assert parse_policy(TWO_TIERS).score_cuts == (0.5,)
    assert parse_policy(THREE_TIERS).score_cuts == (0.3, 0.7)
    assert parse_policy(WITH_CONDITION).score_cuts == (0.5, 0.8)  # a condition beside difficulty counts too


@pytest.mark.parametrize("text", [TWO_TIERS, THREE_TIERS, WITH_CONDITION])
def test_scores_between_the_same_cuts_route_alike(text: str) -> None:
    policy = parse_policy(text)
    edges = np.array(policy.score_cuts)
    scores = np.concatenate([np.linspace(0.0, 1.0, 401), edges, np.nextafter(edges, 0.0)])
    for metadata in ({}, {"app": "support"}):
        for tokens in (10, 2000):
            seen: dict[int, str] = {}
            for score in scores:
                band = int(np.searchsorted(edges, score, side="right"))
                tier = policy.route(float(score), tokens, metadata)
                assert seen.setdefault(band, tier) == tier, (score, band, metadata, tokens)


def test_first_stage_is_off_unless_configured_and_defaults_when_named() -> None:
    assert parse_policy(TWO_TIERS).config.classifier.first_stage is None
    policy = parse_policy(with_first_stage(TWO_TIERS, "  first_stage: {}\n"))
    first = policy.config.classifier.first_stage
    assert first is not None and first.disagreement == 0.005 and first.path is None
    assert policy.first_stage_path is None  # the shipped one


def test_first_stage_path_is_relative_to_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(with_first_stage(TWO_TIERS, "  first_stage: {path: stage1, disagreement: 0.002}\n"))
    policy = load_policy(path)
    assert policy.first_stage_path == tmp_path / "stage1"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("  first_stage: {disagreement: 0.5}\n", "classifier.first_stage.disagreement: must be <= 0.1 (got 0.5)"),
        ("  first_stage: {disagreement: -0.01}\n", "classifier.first_stage.disagreement: must be >= 0"),
        ("  first_stage: {margin: 0.1}\n", "classifier.first_stage.margin"),
    ],
)
def test_bad_first_stage_settings_name_the_field(section: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(with_first_stage(TWO_TIERS, section), source="router.yaml")
    assert expected in str(caught.value)
