"""The strategies package's public surface is exactly its __all__, and every strategy fits the protocol."""

from __future__ import annotations

import strategies
from strategies import (
    BestOfN,
    ChainOfThought,
    Direct,
    Extendable,
    Reasoning,
    ReasoningConfig,
    SelfConsistency,
    Strategy,
)

MODULES = {
    "base", "best_of_n", "chain_of_thought", "direct", "escalation", "extraction", "reasoning",
    "self_consistency", "voting",
}


def test_all_is_exactly_the_public_surface() -> None:
    public = {name for name in vars(strategies) if not name.startswith("_")}
    assert set(strategies.__all__) == public - MODULES
    assert len(strategies.__all__) == len(set(strategies.__all__))


def test_every_strategy_fits_the_protocol() -> None:
    strategies = [Direct(), ChainOfThought(), Reasoning(ReasoningConfig(effort="low")), SelfConsistency(), BestOfN()]
    assert all(isinstance(strategy, Strategy) for strategy in strategies)
    assert [s.name for s in strategies] == ["direct", "chain_of_thought", "reasoning", "self_consistency", "best_of_n"]
    assert [isinstance(s, Extendable) for s in strategies] == [False, False, False, True, True]
