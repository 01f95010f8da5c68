"""The strategies package's public surface is exactly its __all__, and the registry is router.yaml's schema."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

import strategies
from strategies import STRATEGY_TYPES, AnyStrategy, BestOfN, Sampling, SelfConsistency, Strategy, Verify

MODULES = {
    "base", "best_of_n", "chain_of_thought", "direct", "extraction", "reasoning", "registry", "sampling",
    "self_consistency", "structured", "verify", "voting",
}
SCHEMA = TypeAdapter(AnyStrategy)


def test_all_is_exactly_the_public_surface() -> None:
    public = {name for name in vars(strategies) if not name.startswith("_")}
    assert set(strategies.__all__) == public - MODULES
    assert len(strategies.__all__) == len(set(strategies.__all__))


def test_the_registry_validates_each_type_into_its_own_strategy() -> None:
    assert STRATEGY_TYPES == ("direct", "chain_of_thought", "reasoning", "self_consistency", "best_of_n", "verify")
    samples = {"self_consistency": 5, "best_of_n": 4, "verify": 2}
    for name in STRATEGY_TYPES:
        options: dict[str, object] = {"type": name}
        if name in ("self_consistency", "best_of_n"):
            options["n"] = samples[name]
        if name == "reasoning":
            options["effort"] = "low"
        strategy = SCHEMA.validate_python(options)
        assert isinstance(strategy, Strategy) and strategy.type == name
        assert strategy.max_samples() == samples.get(name, 1)
        assert (strategy.one_call([{"role": "user", "content": "q"}], _params()) is None) == (name in samples)


def test_the_schema_refuses_unknown_types_and_keys() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        SCHEMA.validate_python({"type": "tree_search"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        SCHEMA.validate_python({"type": "direct", "n": 3})


def test_only_what_measures_confidence_can_escalate() -> None:
    assert SelfConsistency(n=3).measures_confidence() and Verify().measures_confidence()
    assert BestOfN(n=3).measures_confidence() and not BestOfN(n=3, scorer="logprob").measures_confidence()
    assert isinstance(BestOfN(n=3), Sampling) and not strategies.Direct().measures_confidence()


def _params():  # type: ignore[no-untyped-def]
    from core.llm import GenerationParams

    return GenerationParams()
