"""Policy texts and outcome data whose right answers are worked out by hand in the tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifiers.records import OutcomeRecord, TierOutcome

# Two hosted-style tiers with explicit prices (no LiteLLM lookup), split at difficulty 0.5.
TWO_TIERS = """\
# test policy
tiers:
  - name: weak
    backend: litellm
    model: test/weak
    price: {input_per_million: 1.0, output_per_million: 2.0}
    expected_output_tokens: 100
  - name: strong
    backend: litellm
    model: test/strong
    price: {input_per_million: 10.0, output_per_million: 30.0}
    expected_output_tokens: 100
rules:
  - name: easy
    when: {difficulty: {max: 0.50}}   # keep this comment
    tier: weak
  - name: hard
    when:
      difficulty:
        min: 0.50
    tier: strong
  - name: default
    tier: weak
"""

# Three tiers, three bands, conditions before them, escalation, budgets and fallbacks.
THREE_TIERS = """\
tiers:
  - name: cheap
    backend: local
    model: test/cheap
    price: {input_per_million: 1.0, output_per_million: 1.0}
    expected_output_tokens: 100
    max_tokens: 200
  - name: mid
    backend: litellm
    model: test/mid
    api_key_env: TEST_KEY
    price: {input_per_million: 2.0, output_per_million: 4.0}
    expected_output_tokens: 100
    strategy: {type: chain_of_thought}
  - name: dear
    backend: litellm
    model: test/dear
    price: {input_per_million: 10.0, output_per_million: 20.0}
    expected_output_tokens: 100
    max_tokens: 4096
    strategy:
      type: self_consistency
      n: 5
      answer_type: number
rules:
  - name: vip
    when: {metadata: {app: vip, plan: pro}}
    tier: dear
  - name: asked-mini
    when: {model: [gpt-4o-mini, mini]}
    tier: cheap
  - name: long
    when: {prompt_tokens: {min: 1000}}
    tier: mid
  - name: low
    when: {difficulty: {min: 0.0, max: 0.3}}
    tier: cheap
  - name: middle
    when: {difficulty: {min: 0.3, max: 0.7}}
    tier: mid
  - name: high
    when: {difficulty: {min: 0.7, max: 1.0}}
    tier: dear
  - name: default
    tier: mid
escalation:
  - from_tier: dear
    when: {agreement_below: 0.6}
    then: {more_samples: 3}
budgets:
  max_cost_per_request_usd: 0.05
  per_key_daily_usd: 1.0
  on_exceeded: downgrade
fallbacks:
  dear: [mid, cheap]
  mid: [cheap]
"""

# Five records: difficulty, weak correct, strong correct (costs 0.001 weak, 0.010 strong).
FIVE = [("a", 0.1, 1, 1), ("b", 0.3, 1, 0), ("c", 0.6, 0, 1), ("d", 0.8, 0, 1), ("e", 0.9, 0, 0)]


def records() -> list[OutcomeRecord]:
    """The five records as OutcomeRecords."""
    return [
        OutcomeRecord(
            id=rid,
            source="test",
            prompt=f"question {rid}",
            outcomes={
                "weak": TierOutcome(correct=float(weak), cost_usd=0.001),
                "strong": TierOutcome(correct=float(strong), cost_usd=0.010),
            },
        )
        for rid, _, weak, strong in FIVE
    ]


DIFFICULTIES = np.array([d for _, d, _, _ in FIVE])


def five_outcomes() -> list[dict[str, object]]:
    """The five records in the outcomes JSONL shape, each row with its cost."""
    return [
        {
            "id": rid,
            "source": "test",
            "prompt": f"question {rid}",
            "outcomes": {
                "weak": {"correct": bool(weak), "cost_usd": 0.001},
                "strong": {"correct": bool(strong), "cost_usd": 0.010},
            },
        }
        for rid, _, weak, strong in FIVE
    ]


def five_scores() -> list[dict[str, object]]:
    """Their difficulty scores, as `router classifier score` writes them."""
    return [{"id": rid, "difficulty": d} for rid, d, _, _ in FIVE]


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    """Write rows as JSON Lines."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line number of the nth line of `text` that contains `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth - 1]
