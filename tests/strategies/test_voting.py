"""Majority voting: counts, agreement, the tie rule and when a leader is decided."""

from __future__ import annotations

import pytest

from strategies import majority_vote


@pytest.mark.parametrize(
    ("answers", "winner", "votes", "runner_up", "agreement"),
    [
        (["4", "4", "5"], "4", 2, 1, 2 / 3),
        (["5", "4", "4"], "4", 2, 1, 2 / 3),
        (["4"], "4", 1, 0, 1.0),
        (["4", "5"], "4", 1, 1, 0.5),  # tie: the first seen wins
        (["5", "4"], "5", 1, 1, 0.5),
        (["5", "4", "4", "5"], "5", 2, 2, 0.5),  # tie at 2: "5" appeared first
        (["a", "b", "c"], "a", 1, 1, 1 / 3),
        ([None, "4", None], "4", 1, 0, 1 / 3),  # unreadable samples count in the total
        ([None, None], None, 0, 0, 0.0),
        ([], None, 0, 0, 0.0),
        (["7", "7", "7", "7"], "7", 4, 0, 1.0),
    ],
)
def test_majority_vote(
    answers: list[str | None], winner: str | None, votes: int, runner_up: int, agreement: float
) -> None:
    vote = majority_vote(answers)
    assert (vote.answer, vote.votes, vote.runner_up_votes) == (winner, votes, runner_up)
    assert vote.total == len(answers)
    assert vote.agreement == pytest.approx(agreement)


def test_counts_are_ranked_by_votes_then_first_appearance() -> None:
    assert majority_vote(["b", "a", "a", "c", "b", "c", "c"]).counts == (("c", 3), ("b", 2), ("a", 2))


@pytest.mark.parametrize(
    ("answers", "remaining", "decided"),
    [
        (["4", "4", "4"], 2, True),  # 3 > 0 + 2
        (["4", "4", "4"], 3, False),  # 3 could be tied by 3 more
        (["4", "4", "5"], 0, True),
        (["4", "4", "5"], 1, False),  # "5" could tie at 2
        (["4", "5"], 0, False),  # a tie is not decided
        ([None, None], 0, False),  # no answer is never decided
        (["4", "4", "4", "4", "4", "5"], 3, True),
    ],
)
def test_decided(answers: list[str | None], remaining: int, decided: bool) -> None:
    assert majority_vote(answers).decided(remaining) is decided
