"""The policy engine: router.yaml's schema, the `Policy` that turns difficulty into a tier and a
compute budget, hot reload, and (in `policies.simulate` and `policies.calibrate`) replay and
threshold calibration on recorded outcomes."""

from policies.loader import DEFAULT_POLICY_PATH, load_policy, parse_policy
from policies.policy import BudgetVerdict, Decision, Policy
from policies.pricing import TokenPrice
from policies.reload import PolicyStore
from policies.schema import PolicyFile

__all__ = [
    "DEFAULT_POLICY_PATH",
    "BudgetVerdict",
    "Decision",
    "Policy",
    "PolicyFile",
    "PolicyStore",
    "TokenPrice",
    "load_policy",
    "parse_policy",
]
