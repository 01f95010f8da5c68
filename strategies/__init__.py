"""Inference-time compute strategies: how much a tier spends on one answer, every token accounted."""

from strategies.base import (
    CallRecord,
    CallTotals,
    Extendable,
    Sample,
    Strategy,
    StrategyResult,
    with_instruction,
)
from strategies.best_of_n import BestOfN, BestOfNConfig
from strategies.chain_of_thought import (
    STEP_BY_STEP,
    ChainOfThought,
    ChainOfThoughtConfig,
)
from strategies.direct import Direct, DirectConfig
from strategies.escalation import Escalation, EscalationConfig, EscalationStage
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
from strategies.reasoning import Reasoning, ReasoningConfig
from strategies.self_consistency import SelfConsistency, SelfConsistencyConfig
from strategies.voting import Vote, majority_vote

__all__ = [
    "ANSWER_TYPES",
    "STEP_BY_STEP",
    "AnswerType",
    "BestOfN",
    "BestOfNConfig",
    "CallRecord",
    "CallTotals",
    "ChainOfThought",
    "ChainOfThoughtConfig",
    "Direct",
    "DirectConfig",
    "Escalation",
    "EscalationConfig",
    "EscalationStage",
    "Extendable",
    "Reasoning",
    "ReasoningConfig",
    "Sample",
    "SelfConsistency",
    "SelfConsistencyConfig",
    "Strategy",
    "StrategyResult",
    "Vote",
    "extract_answer",
    "extract_choice",
    "extract_number",
    "extract_text",
    "grade",
    "majority_vote",
    "normalize_text",
    "reference_answer",
    "with_instruction",
]
