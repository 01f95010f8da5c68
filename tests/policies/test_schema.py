"""Every kind of mistake in router.yaml: the YAML path, the message and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import load_policy, parse_policy
from core.errors import ConfigError, PolicyError
from tests.policies.support import THREE_TIERS, TWO_TIERS, line_of


def problems(text: str) -> list[str]:
    """The messages a PolicyError lists for `text`, read as router.yaml."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="router.yaml")
    return str(caught.value).splitlines()


def only(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_the_test_policies_are_valid() -> None:
    assert parse_policy(TWO_TIERS).tier_names == ("weak", "strong")
    assert parse_policy(THREE_TIERS).tier_names == ("cheap", "mid", "dear")


def test_policy_error_is_a_config_error() -> None:
    assert issubclass(PolicyError, ConfigError)


def test_n_below_one_names_path_and_line() -> None:
    text = THREE_TIERS.replace("n: 5", "n: 0")
    assert (
        only(text)
        == f"tiers[2].strategy.n: must be >= 1 (got 0) (router.yaml line {line_of(text, 'n: 0')})"
    )


def test_unknown_key_suggests_the_right_one() -> None:
    text = TWO_TIERS.replace("expected_output_tokens: 100", "expected_output_tokns: 100", 1)
    message = only(text)
    assert message.startswith(
        "tiers[0].expected_output_tokns: unknown key; did you mean 'expected_output_tokens'?"
    )
    assert message.endswith(f"(router.yaml line {line_of(text, 'expected_output_tokns')})")


def test_unknown_key_inside_a_strategy_lists_that_strategys_keys() -> None:
    text = THREE_TIERS.replace("answer_type: number", "answer_typ: number")
    message = only(text)
    assert message.startswith(
        "tiers[2].strategy.answer_typ: unknown key; did you mean 'answer_type'?"
    )
    assert "round_size" in message and "scorer" not in message
    assert f"line {line_of(text, 'answer_typ:')})" in message


def test_unknown_top_level_key() -> None:
    text = TWO_TIERS + "budget:\n  max_cost_per_request_usd: 1\n"
    message = only(text)
    assert message.startswith("budget: unknown key; did you mean 'budgets'?")
    assert message.endswith(f"(router.yaml line {line_of(text, 'budget:')})")


def test_wrong_types() -> None:
    text = TWO_TIERS.replace("expected_output_tokens: 100", "expected_output_tokens: lots", 1)
    assert only(text) == (
        "tiers[0].expected_output_tokens: must be a whole number "
        f"(router.yaml line {line_of(text, 'lots')})"
    )
    text = TWO_TIERS.replace("model: test/weak", "model: 12")
    assert only(text).startswith("tiers[0].model: must be a string")


def test_wrong_choice_lists_the_choices() -> None:
    text = TWO_TIERS.replace("backend: litellm", "backend: openai", 1)
    assert only(text) == (
        "tiers[0].backend: must be 'litellm' or 'local' (got 'openai') "
        f"(router.yaml line {line_of(text, 'openai')})"
    )


def test_unknown_strategy_type_points_at_type() -> None:
    text = THREE_TIERS.replace("type: chain_of_thought", "type: tree_of_thought")
    assert only(text) == (
        "tiers[1].strategy.type: unknown strategy type 'tree_of_thought'; use one of direct, "
        "chain_of_thought, reasoning, self_consistency, best_of_n, verify "
        f"(router.yaml line {line_of(text, 'tree_of_thought')})"
    )


def test_strategy_limits() -> None:
    text = THREE_TIERS.replace("answer_type: number", "temperature: 0")
    assert only(text).startswith(
        "tiers[2].strategy: temperature 0 makes all 5 samples identical; set a temperature such as 0.7, or n: 1"
    )
    text = THREE_TIERS.replace("answer_type: number", "round_size: 9")
    assert (
        only(text)
        == f"tiers[2].strategy.round_size: must be <= n (5) (router.yaml line {line_of(text, 'round_size')})"
    )
    text = THREE_TIERS.replace("answer_type: number", "stop_agreement: 1.5")
    assert only(text).startswith("tiers[2].strategy.stop_agreement: must be <= 1 (got 1.5)")


def test_missing_required_key_points_at_its_parent() -> None:
    text = TWO_TIERS.replace("    model: test/weak\n", "")
    assert (
        only(text)
        == f"tiers[0].model: is required but missing (router.yaml line {line_of(text, '- name: weak')})"
    )


def test_reasoning_needs_exactly_one_control_and_room_for_thinking() -> None:
    base = TWO_TIERS.replace(
        "    expected_output_tokens: 100\nrules",
        "    expected_output_tokens: 100\n    strategy: STRATEGY\nrules",
    )
    both = base.replace("STRATEGY", "{type: reasoning, effort: low, thinking_budget_tokens: 1024}")
    both = both.replace("test/strong", "test/strong\n    max_tokens: 2048")
    assert only(both) == (
        "tiers[1].strategy: give exactly one of effort (minimal, low, medium, high) or thinking_budget_tokens "
        f"(router.yaml line {line_of(both, 'type: reasoning')})"
    )
    small = base.replace("STRATEGY", "{type: reasoning, thinking_budget_tokens: 512}")
    assert only(small).startswith(
        "tiers[1].strategy.thinking_budget_tokens: must be >= 1024 (got 512)"
    )
    large = base.replace("STRATEGY", "{type: reasoning, thinking_budget_tokens: 4096}")
    assert only(large).startswith(
        "tiers[1].strategy.thinking_budget_tokens: must be < max_tokens (1024)"
    )


def test_reasoning_on_a_local_tier_is_refused() -> None:
    text = THREE_TIERS.replace(
        "    max_tokens: 200\n",
        "    max_tokens: 200\n    strategy: {type: reasoning, effort: low}\n",
    )
    assert only(text).startswith("tiers[0].strategy.type: reasoning needs backend: litellm")


def test_api_key_env_must_be_a_variable_name() -> None:
    text = THREE_TIERS.replace("api_key_env: TEST_KEY", "api_key_env: sk-abc123")
    assert only(text) == (
        "tiers[1].api_key_env: must be the NAME of the environment variable that holds the key (e.g. "
        f"OPENAI_API_KEY), never the key itself (router.yaml line {line_of(text, 'sk-abc123')})"
    )


def test_backend_specific_options() -> None:
    text = TWO_TIERS.replace("model: test/weak", "model: test/weak\n    gguf_file: model.gguf")
    assert only(text) == (
        "tiers[0].gguf_file: only applies to backend: local; remove it or change the backend "
        f"(router.yaml line {line_of(text, 'gguf_file')})"
    )
    text = THREE_TIERS.replace("model: test/cheap", "model: test/cheap\n    api_base: http://x")
    assert only(text).startswith("tiers[0].api_base: only applies to backend: litellm")


def test_price_needs_a_complete_form() -> None:
    text = TWO_TIERS.replace(
        "{input_per_million: 1.0, output_per_million: 2.0}", "{input_per_million: 1.0}"
    )
    assert only(text) == (
        "tiers[0].price: give both input_per_million and output_per_million "
        f"(router.yaml line {line_of(text, 'input_per_million: 1.0}')})"
    )
    text = TWO_TIERS.replace(
        "output_per_million: 2.0}", "output_per_million: 2.0, gpu_hour_usd: 1}"
    )
    assert "not both" in only(text)


def test_duplicate_tier_names() -> None:
    text = TWO_TIERS.replace("name: strong", "name: weak")
    assert problems(text)[0] == (
        "tiers[1].name: duplicate tier name 'weak' (first defined at tiers[0]) "
        f"(router.yaml line {line_of(text, 'name: weak', 2)})"
    )


def test_rule_naming_a_missing_tier() -> None:
    text = TWO_TIERS.replace("tier: strong", "tier: stronk")
    assert only(text) == (
        "rules[1].tier: no tier named 'stronk'; the tiers are: weak, strong "
        f"(router.yaml line {line_of(text, 'stronk')})"
    )


def test_overlapping_bands() -> None:
    text = TWO_TIERS.replace("min: 0.50", "min: 0.40")
    assert only(text) == (
        "rules[1].when.difficulty.min: band [0.4, 1) overlaps rule 'easy' (up to 0.5); start this "
        f"band at 0.5 (router.yaml line {line_of(text, 'min: 0.40')})"
    )


def test_gapped_bands() -> None:
    text = TWO_TIERS.replace("min: 0.50", "min: 0.60")
    assert only(text) == (
        "rules[1].when.difficulty.min: gap: no difficulty-only rule covers [0.5, 0.6); the "
        "difficulty bands must tile [0, 1], so start this band at 0.5 "
        f"(router.yaml line {line_of(text, 'min: 0.60')})"
    )
    top = THREE_TIERS.replace("{min: 0.7, max: 1.0}", "{min: 0.7, max: 0.9}")
    assert only(top) == (
        "rules[5].when.difficulty.max: gap: no difficulty-only rule covers [0.9, 1]; the difficulty "
        f"bands must tile [0, 1], so end the highest band at 1 (router.yaml line {line_of(top, 'max: 0.9}')})"
    )


def test_band_with_min_not_below_max() -> None:
    text = THREE_TIERS.replace("{min: 0.3, max: 0.7}", "{min: 0.7, max: 0.3}")
    found = problems(text)
    assert (
        found[0]
        == f"rules[4].when.difficulty.max: must be greater than min (0.7) (router.yaml line {line_of(text, '{min: 0.7, max: 0.3}')})"
    )


def test_bands_only_tile_among_difficulty_only_rules() -> None:
    # A band that also has another condition is not part of the tiling.
    text = THREE_TIERS.replace(
        "{metadata: {app: vip, plan: pro}}", "{metadata: {app: vip}, difficulty: {min: 0.2}}"
    )
    assert parse_policy(text).band_rules == ("low", "middle", "high")


def test_default_rule_is_required_and_last() -> None:
    text = TWO_TIERS.replace("  - name: default\n    tier: weak\n", "")
    assert only(text) == (
        "rules[1]: the last rule must be the default: a rule with a name and a tier but no `when`, "
        f"used when no other rule matches (router.yaml line {line_of(text, '- name: hard')})"
    )
    early = TWO_TIERS.replace("rules:\n", "rules:\n  - name: first\n    tier: weak\n")
    assert problems(early)[0] == (
        "rules[0]: a rule without `when` matches every query, so the rules after it never match; "
        f"move it to the end as the default rule (router.yaml line {line_of(early, '- name: first')})"
    )


def test_empty_when_is_refused() -> None:
    text = THREE_TIERS.replace(
        "  - name: default\n    tier: mid\n", "  - name: default\n    when: {}\n    tier: mid\n"
    )
    assert problems(text) == [
        "rules[6]: the last rule must be the default: a rule with a name and a tier but no `when`, "
        f"used when no other rule matches (router.yaml line {line_of(text, '- name: default')})",
        "rules[6].when: has no conditions; delete `when` to make this the default rule "
        f"(router.yaml line {line_of(text, 'when: {}')})",
    ]


def test_fallback_and_escalation_naming_missing_tiers() -> None:
    text = THREE_TIERS.replace("dear: [mid, cheap]", "dear: [mid, cheep]")
    assert only(text) == (
        "fallbacks.dear[1]: no tier named 'cheep'; the tiers are: cheap, mid, dear "
        f"(router.yaml line {line_of(text, 'cheep')})"
    )
    text = THREE_TIERS.replace("from_tier: dear", "from_tier: deer")
    assert only(text).startswith("escalation[0].from_tier: no tier named 'deer'")
    text = THREE_TIERS.replace("then: {more_samples: 3}", "then: {to_tier: dear}")
    assert only(text).startswith("escalation[0].then.to_tier: must differ from from_tier")


def test_escalation_needs_a_strategy_that_measures_agreement() -> None:
    text = THREE_TIERS.replace("from_tier: dear", "from_tier: mid")
    assert only(text) == (
        "escalation[0].from_tier: tier 'mid' uses strategy chain_of_thought, which measures no "
        "agreement; escalation needs self_consistency, best_of_n with scorer: agreement, or verify "
        f"(router.yaml line {line_of(text, 'from_tier: mid')})"
    )


def test_escalation_then_needs_exactly_one_action_and_no_loops() -> None:
    text = THREE_TIERS.replace("then: {more_samples: 3}", "then: {more_samples: 3, to_tier: mid}")
    assert only(text).startswith("escalation[0].then: give exactly one of more_samples or to_tier")
    looped = THREE_TIERS.replace(
        "    strategy: {type: chain_of_thought}", "    strategy: {type: best_of_n, n: 2}"
    ).replace(
        "then: {more_samples: 3}",
        "then: {to_tier: mid}\n  - from_tier: mid\n    when: {agreement_below: 0.5}\n    then: {to_tier: dear}",
    )
    assert (
        only(looped)
        == f"escalation: escalation loops: dear -> mid -> dear; a query could escalate forever (router.yaml line {line_of(looped, 'escalation:')})"
    )


def test_every_problem_is_reported_in_line_order() -> None:
    text = (
        THREE_TIERS.replace("      n: 5", "      n: 0")
        .replace("backend: local", "backend: lokal")
        .replace("tier: cheap\n  - name: middle", "tier: cheep\n  - name: middle")
    )
    found = problems(text)
    assert [m.split(":")[0] for m in found] == ["tiers[0].backend", "tiers[2].strategy.n"]
    # Cross-field checks run once the schema itself is valid.
    fixed = text.replace("      n: 0", "      n: 5").replace("backend: lokal", "backend: local")
    assert only(fixed).startswith("rules[3].tier: no tier named 'cheep'")


def test_yaml_syntax_error_gives_the_line() -> None:
    text = TWO_TIERS.replace("    tier: weak\n  - name: hard", "    tier: [weak\n  - name: hard")
    message = only(text)
    assert message.startswith("YAML syntax error:")
    assert "(router.yaml line " in message and "fix the file's syntax" in message


def test_duplicate_keys_are_refused() -> None:
    text = TWO_TIERS.replace("model: test/weak", "model: test/weak\n    model: test/other")
    assert (
        only(text)
        == f"tiers[0].model: duplicate key (first at line {line_of(text, 'test/weak')}); keep one of them (router.yaml line {line_of(text, 'test/other')})"
    )


def test_empty_and_non_mapping_files() -> None:
    assert (
        only("# nothing\n")
        == "router.yaml: is empty; it needs at least `tiers:` and `rules:` (see docs/policy.md)."
    )
    assert only("- a\n- b\n").startswith(
        "router.yaml: must be a mapping with `tiers:` and `rules:`"
    )
    assert problems("rules: []\ntiers: []\n") == [
        "rules: must not be empty (router.yaml line 1)",
        "tiers: must not be empty (router.yaml line 2)",
    ]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "absent.yaml")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_bytes(b"tiers: \xff\n")
    with pytest.raises(PolicyError, match="is not UTF-8"):
        load_policy(path)


def test_messages_name_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text(TWO_TIERS.replace("tier: strong", "tier: stronk"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).endswith(f"({path} line {line_of(TWO_TIERS, 'tier: strong')})")
