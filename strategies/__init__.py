"""Inference-time compute strategies: how much a tier spends on one answer, every token accounted.

Each strategy is its own router.yaml options model (`strategies.base.Strategy`); `strategies.registry`
lists them by `type`.
"""

from strategies.base import (
    CallRecord,
    CallTotals,
    OneCall,
    Recorder,
    Sample,
    Strategy,
    StrategyProblem,
    StrategyResult,
    with_instruction,
)
from strategies.best_of_n import BestOfN
from strategies.chain_of_thought import STEP_BY_STEP, ChainOfThought
from strategies.direct import Direct
from strategies.extraction import (
    ANSWER_TYPES,
    AnswerType,
    extract_answer,
    extract_choice,
    extract_number,
    extract_text,
    grade,
    normalize_text,
    reference_answer,
)
from strategies.reasoning import REASONING_EFFORT_TOKENS, Reasoning
from strategies.registry import STRATEGY_TYPES, AnyStrategy
from strategies.sampling import Sampling
from strategies.self_consistency import SelfConsistency
from strategies.structured import StructuredForm, canonical_json, canonical_tool_calls, structured_form
from strategies.verify import Verify
from strategies.voting import Vote, majority_vote

__all__ = [
    "ANSWER_TYPES",
    "REASONING_EFFORT_TOKENS",
    "STEP_BY_STEP",
    "STRATEGY_TYPES",
    "AnswerType",
    "AnyStrategy",
    "BestOfN",
    "CallRecord",
    "CallTotals",
    "ChainOfThought",
    "Direct",
    "OneCall",
    "Reasoning",
    "Recorder",
    "Sample",
    "Sampling",
    "SelfConsistency",
    "Strategy",
    "StrategyProblem",
    "StrategyResult",
    "StructuredForm",
    "Verify",
    "Vote",
    "canonical_json",
    "canonical_tool_calls",
    "extract_answer",
    "extract_choice",
    "extract_number",
    "extract_text",
    "grade",
    "majority_vote",
    "normalize_text",
    "reference_answer",
    "structured_form",
    "with_instruction",
]
