"""Checks across fields of a schema-valid router.yaml; each problem points at the key to fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from core.llm import GenerationParams
from core.names import PASSTHROUGH, ROUTER_MODELS
from policies.pricing import TokenPrice, price_from_config, resolve_price
from policies.schema import CAPABILITIES, Band, PolicyFile, Rule, Tier

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
MissingTier = Callable[[Loc, str], Problem]

AGREEMENT_STRATEGIES = "self_consistency, best_of_n with scorer: agreement, or verify"


def check_policy(config: PolicyFile) -> tuple[list[Problem], dict[str, TokenPrice]]:
    """All cross-field problems of `config`, and the price of each tier (and of pass-through) that has one."""
    problems: list[Problem] = []
    prices: dict[str, TokenPrice] = {}
    problems.extend(_check_tiers(config, prices))
    tier_names = ", ".join(dict.fromkeys(t.name for t in config.tiers))
    known = {t.name for t in config.tiers}

    def missing(loc: Loc, name: str) -> Problem:
        return loc, f"no tier named '{name}'; the tiers are: {tier_names}"

    problems.extend(_check_rules(config, known, missing))
    problems.extend(_check_escalation(config, known, missing))
    for key, targets in config.fallbacks.items():
        if key not in known:
            problems.append(missing(("fallbacks", key), key))
        for j, target in enumerate(targets):
            if target not in known:
                problems.append(missing(("fallbacks", key, j), target))
            elif target == key:
                problems.append((("fallbacks", key, j), "a tier cannot be its own fallback"))
            elif target in targets[:j]:
                problems.append((("fallbacks", key, j), f"'{target}' is listed twice"))
    problems.extend(_check_server(config, known, missing, prices))
    problems.extend(_check_live(config, known, missing))
    return problems, prices


def _check_live(config: PolicyFile, known: set[str], missing: MissingTier) -> Iterator[Problem]:
    judge = config.grading.judge_tier
    if judge is not None and judge not in known:
        yield missing(("grading", "judge_tier"), judge)
    if config.grading.sample > 0 and judge is None:
        yield ("grading", "judge_tier"), "grading.sample is above 0: name the tier that judges the answers"
    for j, tier in enumerate(config.exploration.tiers or ()):
        if tier not in known:
            yield missing(("exploration", "tiers", j), tier)
    if config.exploration.sample > 0 and not config.ledger.store_prompts:
        yield ("ledger", "store_prompts"), (
            "exploration gathers training rows, and training reads the prompts: set ledger.store_prompts: true "
            "(kept for ledger.retention_days)"
        )


def _check_server(
    config: PolicyFile, known: set[str], missing: MissingTier, prices: dict[str, TokenPrice]
) -> Iterator[Problem]:
    server = config.server
    names: set[str] = set()
    for i, key in enumerate(server.api_keys):
        if (key.key_env is None) == (key.sha256 is None):
            yield ("server", "api_keys", i), "give exactly one of key_env or sha256"
        if key.name in names:
            yield ("server", "api_keys", i, "name"), f"'{key.name}' is used twice; key names must be unique"
        names.add(key.name)
    if server.passthrough.price is not None:
        priced = price_from_config(server.passthrough.price)
        if isinstance(priced, str):
            yield ("server", "passthrough", "price"), priced
        else:
            prices[PASSTHROUGH] = priced  # a reserved name: no tier can take it
    for j, target in enumerate(server.passthrough.fallbacks):
        if target not in known:
            yield missing(("server", "passthrough", "fallbacks", j), target)


def request_notes(config: PolicyFile) -> list[str]:
    """How the tiers of a valid policy serve requests that change what a strategy can do (tools, JSON,
    audio, images, files): what the executor will do, said before any request arrives."""
    notes = []
    for tier in config.tiers:
        strategy = tier.strategy
        several = strategy.one_call((), GenerationParams()) is None
        if tier.backend == "local":
            notes.append(f"tier '{tier.name}': requests with tools or response_format get a 400 (local models run without them)")
        elif several and not strategy.handles_structured_answers():
            notes.append(
                f"tier '{tier.name}' ({strategy.describe()}): requests with tools or response_format are answered "
                "by one direct call"
            )
        elif several:
            notes.append(
                f"tier '{tier.name}' ({strategy.describe()}): votes over tool calls and JSON answers count their "
                "canonical form"
            )
        if several and tier.audio:
            notes.append(f"tier '{tier.name}' ({strategy.describe()}): audio output is answered by one direct call")
    for capability in CAPABILITIES:
        if not any(getattr(tier, capability) for tier in config.tiers):
            notes.append(f"no tier has `{capability}: true`: requests that need it get a 400")
    return notes


def band_of(rule: Rule) -> Band | None:
    """The band of a rule whose only condition is a difficulty band (these must tile [0, 1])."""
    when = rule.when
    if (
        when is None
        or when.prompt_tokens is not None
        or when.model is not None
        or when.metadata is not None
    ):
        return None
    return when.difficulty


def _check_tiers(config: PolicyFile, prices: dict[str, TokenPrice]) -> Iterator[Problem]:
    first_index: dict[str, int] = {}
    for i, tier in enumerate(config.tiers):
        loc: Loc = ("tiers", i)
        if tier.name in first_index:
            yield (
                (*loc, "name"),
                (
                    f"duplicate tier name '{tier.name}' (first defined at tiers[{first_index[tier.name]}])"
                ),
            )
        else:
            first_index[tier.name] = i
        if tier.name in (PASSTHROUGH, *ROUTER_MODELS):
            yield (*loc, "name"), f"'{tier.name}' is reserved for the proxy's own model names; rename the tier"
        yield from _check_backend_options(tier, loc)
        yield from _check_strategy(tier, loc)
        if tier.expected_output_tokens > tier.max_tokens:
            yield (
                (*loc, "expected_output_tokens"),
                (
                    f"must be <= max_tokens ({tier.max_tokens}); a tier cannot expect more output "
                    "than it allows"
                ),
            )
        price = resolve_price(tier)
        if isinstance(price, str):
            yield (*loc, "price"), price
        else:
            prices[tier.name] = price


def _check_backend_options(tier: Tier, loc: Loc) -> Iterator[Problem]:
    local_only = {"gguf_file": tier.gguf_file, "device": tier.device}
    litellm_only = {"api_base": tier.api_base, "api_key_env": tier.api_key_env}
    wrong = litellm_only if tier.backend == "local" else local_only
    for key, value in wrong.items():
        if value is not None:
            other = "litellm" if tier.backend == "local" else "local"
            yield (
                (*loc, key),
                (f"only applies to backend: {other}; remove it or change the backend"),
            )


def _check_strategy(tier: Tier, loc: Loc) -> Iterator[Problem]:
    for where, message in tier.strategy.problems(backend=tier.backend, max_tokens=tier.max_tokens):
        yield (*loc, "strategy", *where), message


def _check_rules(config: PolicyFile, known: set[str], missing: MissingTier) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    last = len(config.rules) - 1
    for i, rule in enumerate(config.rules):
        loc: Loc = ("rules", i)
        if rule.name in seen:
            yield (
                (*loc, "name"),
                (f"duplicate rule name '{rule.name}' (first used at rules[{seen[rule.name]}])"),
            )
        seen.setdefault(rule.name, i)
        if rule.tier not in known:
            yield missing((*loc, "tier"), rule.tier)
        when = rule.when
        if when is None:
            if i != last:
                yield (
                    loc,
                    (
                        "a rule without `when` matches every query, so the rules after it never "
                        "match; move it to the end as the default rule"
                    ),
                )
            continue
        if all(v is None for v in (when.difficulty, when.prompt_tokens, when.model, when.metadata)):
            yield (*loc, "when"), "has no conditions; delete `when` to make this the default rule"
        if when.difficulty is not None and when.difficulty.min >= when.difficulty.max:
            yield (
                (*loc, "when", "difficulty", "max"),
                (f"must be greater than min ({when.difficulty.min})"),
            )
        tokens = when.prompt_tokens
        if tokens is not None:
            if tokens.min is None and tokens.max is None:
                yield (*loc, "when", "prompt_tokens"), "give min, max or both"
            elif tokens.min is not None and tokens.max is not None and tokens.min >= tokens.max:
                yield (
                    (*loc, "when", "prompt_tokens", "max"),
                    (f"must be greater than min ({tokens.min})"),
                )
    if config.rules[last].when is not None:
        yield (
            ("rules", last),
            (
                "the last rule must be the default: a rule with a name and a tier but no `when`, "
                "used when no other rule matches"
            ),
        )
    yield from _check_bands(config.rules)


def _check_bands(rules: list[Rule]) -> Iterator[Problem]:
    """Bands of the difficulty-only rules must tile [0, 1]: no gap, no overlap."""
    bands = []
    for i, rule in enumerate(rules):
        band = band_of(rule)
        if band is not None and band.min < band.max:
            bands.append((band.min, band.max, i, rule.name))
    if not bands:
        return
    bands.sort()
    covered = 0.0
    previous = ""
    for low, high, i, name in bands:
        loc: Loc = ("rules", i, "when", "difficulty", "min")
        if low > covered:
            yield (
                loc,
                (
                    f"gap: no difficulty-only rule covers [{covered:g}, {low:g}); the difficulty bands "
                    f"must tile [0, 1], so start this band at {covered:g}"
                ),
            )
        elif low < covered:
            yield (
                loc,
                (
                    f"band [{low:g}, {high:g}) overlaps rule '{previous}' (up to {covered:g}); "
                    f"start this band at {covered:g}"
                ),
            )
        if high > covered:
            covered, previous = high, name
    if covered < 1.0:
        i = bands[-1][2]
        yield (
            ("rules", i, "when", "difficulty", "max"),
            (
                f"gap: no difficulty-only rule covers [{covered:g}, 1]; the difficulty bands must tile "
                "[0, 1], so end the highest band at 1"
            ),
        )


def _check_escalation(
    config: PolicyFile, known: set[str], missing: MissingTier
) -> Iterator[Problem]:
    strategies = {t.name: t.strategy for t in config.tiers}
    edges: dict[str, set[str]] = {}
    for i, step in enumerate(config.escalation):
        loc: Loc = ("escalation", i)
        if step.from_tier not in known:
            yield missing((*loc, "from_tier"), step.from_tier)
        else:
            strategy = strategies[step.from_tier]
            if not strategy.measures_confidence():
                yield (
                    (*loc, "from_tier"),
                    (
                        f"tier '{step.from_tier}' uses strategy {strategy.type}, which measures no "
                        f"agreement; escalation needs {AGREEMENT_STRATEGIES}"
                    ),
                )
        then = step.then
        if (then.more_samples is None) == (then.to_tier is None):
            yield (*loc, "then"), "give exactly one of more_samples or to_tier"
        elif then.to_tier is not None:
            if then.to_tier not in known:
                yield missing((*loc, "then", "to_tier"), then.to_tier)
            elif then.to_tier == step.from_tier:
                yield (
                    (*loc, "then", "to_tier"),
                    (
                        "must differ from from_tier; use more_samples to add compute on the same tier"
                    ),
                )
            else:
                edges.setdefault(step.from_tier, set()).add(then.to_tier)
    cycle = _find_cycle(edges)
    if cycle:
        yield (
            ("escalation",),
            (f"escalation loops: {' -> '.join(cycle)}; a query could escalate forever"),
        )


def _find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """A cycle in the escalation graph as a path that returns to its start, or []."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(edges):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return []
