"""Shared by bench/live_replay.py and tests/live: a router.yaml for the replay upstream."""

from __future__ import annotations

from pathlib import Path

POLICY = """
{classifier}tiers:
  - name: weak
    backend: litellm
    model: openai/weak
    api_base: {upstream}/v1
    price: {{input_per_million: 0.6, output_per_million: 0.6}}
    max_tokens: 64
    expected_output_tokens: 16
    timeout_s: 30
  - name: strong
    backend: litellm
    model: openai/strong
    api_base: {upstream}/v1
    price: {{input_per_million: 10.0, output_per_million: 30.0}}
    max_tokens: 64
    expected_output_tokens: 16
    timeout_s: 30
  - name: judge
    backend: litellm
    model: openai/judge
    api_base: {upstream}/v1
    price: {{input_per_million: 10.0, output_per_million: 30.0}}
    max_tokens: 128
    expected_output_tokens: 32
    timeout_s: 30
rules:
  - name: easy
    when: {{difficulty: {{min: 0.0, max: {threshold}}}}}
    tier: weak
  - name: hard
    when: {{difficulty: {{min: {threshold}, max: 1.0}}}}
    tier: strong
  - name: default
    tier: weak
grading:
  judge_tier: judge
  sample: {grade}
exploration:
  sample: {explore}
  tiers: [weak, strong]
ledger:
  store_prompts: true
queue:
  max_depth: {max_depth}
"""


def write_replay_policy(
    path: Path, upstream: str, *, classifier: str | None = None, threshold: float = 0.5, grade: float = 1.0,
    explore: float = 0.1, max_depth: int = 100_000,
) -> Path:
    """weak / strong / judge tiers on the replay upstream, one difficulty threshold, grading and exploration."""
    head = f"classifier: {{path: {classifier}}}\n" if classifier else ""
    path.write_text(POLICY.format(classifier=head, upstream=upstream, threshold=threshold, grade=grade,
                                  explore=explore, max_depth=max_depth))
    return path
