"""`router eval`: the real pipeline (classifier -> policy -> backend -> strategy) on graded questions."""

from router.evals.dataset import EvalQuestion, detect_answer_type, load_questions
from router.evals.runner import EvalRow, run_eval
from router.evals.summary import RunSummary, summarise

__all__ = ["EvalQuestion", "EvalRow", "RunSummary", "detect_answer_type", "load_questions", "run_eval", "summarise"]
