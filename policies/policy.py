"""The live policy: turns a query's difficulty into a tier, a compute budget and an expected cost.

Everything `decide` needs is computed once when the policy is built; a decision is a scan over a
few precompiled rules and one small frozen object, a few microseconds (bench/policy_decide.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from policies.checks import band_of
from core.errors import ConfigError
from core.llm import CHARS_PER_TOKEN, estimate_tokens
from core.names import FORCED_RULE, PASSTHROUGH, SESSION_PIN_RULE
from policies.pricing import TokenPrice
from policies.schema import Capability, EscalationStep, PolicyFile, Rule, Tier
from strategies import Direct, Strategy

_DIRECT = Direct()

@dataclass(frozen=True, slots=True)
class Decision:
    """Where one query goes, how much compute it gets, what that should cost, and why."""

    tier: str
    strategy: Strategy
    rule: str
    expected_cost_usd: float
    reasons: tuple[str, ...]
    policy_version: str
    difficulty: float
    prompt_tokens: int
    fallbacks: tuple[str, ...] = ()
    escalation: tuple[EscalationStep, ...] = ()
    upstream_model: str | None = None  # pass-through only: the model forwarded to

    @property
    def scored_difficulty(self) -> float | None:
        """The classifier's score, or None when the request was not classified (forced, pass-through)."""
        return None if math.isnan(self.difficulty) else self.difficulty


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """What the budgets say about a decision: run it, run a cheaper tier, or refuse."""

    action: Literal["allow", "downgrade", "refuse"]
    decision: Decision
    limit_usd: float | None
    reason: str

    @property
    def allowed(self) -> bool:
        """False when the request must be refused (HTTP 429 in the proxy)."""
        return self.action != "refuse"


class _TierPlan:
    """A tier's precomputed cost coefficients and the parts of a decision that depend only on it."""

    __slots__ = (
        "config",
        "cost_per_prompt_token",
        "cost_fixed",
        "price",
        "why",
        "fallbacks",
        "escalation",
    )

    def __init__(
        self,
        tier: Tier,
        price: TokenPrice,
        fallbacks: tuple[str, ...],
        escalation: tuple[EscalationStep, ...],
    ) -> None:
        samples = tier.strategy.max_samples()
        output_tokens = tier.expected_output_tokens + tier.strategy.extra_output_tokens()
        self.config = tier
        self.price = price
        # Every sample is priced as its own call: an upper bound where a provider shares the prompt.
        self.cost_per_prompt_token = samples * price.input_per_token
        self.cost_fixed = samples * output_tokens * price.output_per_token
        self.why = (
            f"tier '{tier.name}' ({tier.backend} {tier.model}): {tier.strategy.describe()}"
        )
        self.fallbacks = fallbacks
        self.escalation = escalation

    def cost(self, prompt_tokens: int) -> float:
        return self.cost_per_prompt_token * prompt_tokens + self.cost_fixed


class _CompiledRule:
    """A rule's conditions as plain numbers and sets, tested in `Policy._match`."""

    __slots__ = (
        "name",
        "tier",
        "plan",
        "dmin",
        "dmax",
        "tmin",
        "tmax",
        "models",
        "metadata",
        "label",
    )

    def __init__(self, rule: Rule, plan: _TierPlan) -> None:
        when = rule.when
        self.name = rule.name
        self.tier = rule.tier
        self.plan = plan
        self.dmin: float | None = None
        self.dmax = 2.0
        self.tmin = 0
        self.tmax = math.inf
        self.models: frozenset[str] | None = None
        self.metadata: tuple[tuple[str, str], ...] = ()
        parts = []
        if when is not None:
            if when.difficulty is not None:
                self.dmin = when.difficulty.min
                # A band that ends at 1 includes 1; difficulties are never above 1.
                self.dmax = 2.0 if when.difficulty.max >= 1.0 else when.difficulty.max
                closing = "]" if when.difficulty.max >= 1.0 else ")"
                parts.append(
                    f"difficulty in [{when.difficulty.min:g}, {when.difficulty.max:g}{closing}"
                )
            if when.prompt_tokens is not None:
                self.tmin = when.prompt_tokens.min or 0
                self.tmax = (
                    when.prompt_tokens.max if when.prompt_tokens.max is not None else math.inf
                )
                parts.append(f"prompt tokens in [{self.tmin}, {self.tmax})")
            if when.model is not None:
                self.models = frozenset(when.model)
                parts.append(f"requested model in {sorted(self.models)}")
            if when.metadata is not None:
                self.metadata = tuple(when.metadata.items())
                parts.append("metadata " + ", ".join(f"{k}={v}" for k, v in self.metadata))
        conditions = "; ".join(parts) if parts else "no other rule matched (default)"
        self.label = f"rule '{rule.name}': {conditions}"


class Policy:
    """An immutable, validated routing policy; build it with `load_policy` or `parse_policy`."""

    __slots__ = (
        "_config",
        "_version",
        "_source",
        "_plans",
        "_rules",
        "_by_cost",
        "_bands",
        "_passthrough_price",
    )

    def __init__(
        self, config: PolicyFile, prices: Mapping[str, TokenPrice], *, version: str, source: str
    ) -> None:
        self._config = config
        self._version = version
        self._source = source
        self._plans = {
            tier.name: _TierPlan(
                tier,
                prices[tier.name],
                tuple(config.fallbacks.get(tier.name, ())),
                tuple(step for step in config.escalation if step.from_tier == tier.name),
            )
            for tier in config.tiers
        }
        self._rules = tuple(_CompiledRule(rule, self._plans[rule.tier]) for rule in config.rules)
        # Cheapest first, by the cost of a typical 100-token prompt; file order breaks ties.
        order = {name: i for i, name in enumerate(self._plans)}
        self._by_cost = tuple(
            sorted(self._plans, key=lambda name: (self._plans[name].cost(100), order[name]))
        )
        bands = [
            (band.min, i)
            for i, rule in enumerate(config.rules)
            if (band := band_of(rule)) is not None
        ]
        self._bands = tuple(i for _, i in sorted(bands))
        self._passthrough_price = prices.get(PASSTHROUGH)

    @property
    def config(self) -> PolicyFile:
        """The validated schema this policy was built from."""
        return self._config

    @property
    def version(self) -> str:
        """First 12 hex digits of the sha256 of the policy file's content."""
        return self._version

    @property
    def source(self) -> str:
        """Where the policy was read from, as given."""
        return self._source

    @property
    def classifier_path(self) -> Path | None:
        """The classifier artifact the policy names (relative to the policy file); None: the shipped one."""
        named = self._config.classifier.path
        if named is None:
            return None
        path = Path(named).expanduser()
        return path if path.is_absolute() else Path(self._source).parent / path

    @property
    def first_stage_path(self) -> Path | None:
        """The two-stage score's first-stage folder (relative to the policy file); None: the shipped one."""
        first = self._config.classifier.first_stage
        if first is None or first.path is None:
            return None
        path = Path(first.path).expanduser()
        return path if path.is_absolute() else Path(self._source).parent / path

    @property
    def score_cuts(self) -> tuple[float, ...]:
        """Every score at which some rule's difficulty condition starts or stops holding, inside (0, 1).

        A score's side of each cut is all the rules read of it, so a scorer that is exact only
        near these cuts decides like an exact one (classifiers.two_stage).
        """
        edges = {
            edge
            for rule in self._rules
            if rule.dmin is not None
            for edge in (rule.dmin, rule.dmax)
            if 0.0 < edge < 1.0
        }
        return tuple(sorted(edges))

    @property
    def tier_names(self) -> tuple[str, ...]:
        """Tier names in file order."""
        return tuple(self._plans)

    @property
    def tiers_by_cost(self) -> tuple[str, ...]:
        """Tier names cheapest first (expected cost of a 100-token prompt; file order breaks ties)."""
        return self._by_cost

    def tier(self, name: str) -> Tier:
        """The configuration of tier `name`."""
        return self._plans[name].config

    def price(self, tier: str) -> TokenPrice:
        """The per-token price of `tier`."""
        return self._plans[tier].price

    def escalation(self, tier: str) -> tuple[EscalationStep, ...]:
        """The escalation steps that start from `tier`, in file order."""
        return self._plans[tier].escalation

    def fallbacks(self, tier: str) -> tuple[str, ...]:
        """The tiers tried, in order, when `tier` fails."""
        return self._plans[tier].fallbacks

    def worst_case_cost(self, decision: Decision, max_output_tokens: int | None = None) -> float:
        """The most `decision` can cost: every call of its strategy and escalation steps writing its limit.

        Each call is priced at the prompt plus the output limit (the tier's max_tokens, or the
        client's smaller one); a budget reservation of this much can only be settled downwards.
        """
        if decision.tier == PASSTHROUGH:
            price = self._passthrough_price
            if price is None:
                return 0.0
            limit = self._config.server.passthrough.max_tokens
            out = min(limit, max_output_tokens) if max_output_tokens is not None else limit
            return decision.prompt_tokens * price.input_per_token + out * price.output_per_token
        return self._worst_case(decision.tier, decision.prompt_tokens, max_output_tokens, frozenset())

    def _worst_case(self, tier: str, prompt_tokens: int, max_output_tokens: int | None, seen: frozenset[str]) -> float:
        plan = self._plans[tier]
        limit = plan.config.max_tokens
        out = min(limit, max_output_tokens) if max_output_tokens is not None else limit
        per_call = prompt_tokens * plan.price.input_per_token + out * plan.price.output_per_token
        total = plan.config.strategy.max_samples() * per_call
        for step in plan.escalation:  # checks forbid loops; `seen` guards anyway
            if step.then.more_samples is not None:
                total += step.then.more_samples * per_call
            elif step.then.to_tier is not None and step.then.to_tier not in seen:
                total += self._worst_case(step.then.to_tier, prompt_tokens, max_output_tokens, seen | {tier})
        return total

    def expected_cost(self, tier: str, prompt_tokens: int) -> float:
        """Expected USD for a prompt of `prompt_tokens` on `tier`, all strategy samples included."""
        return self._plans[tier].cost(prompt_tokens)

    @property
    def band_rules(self) -> tuple[str, ...]:
        """Names of the difficulty-only rules, lowest band first."""
        return tuple(self._config.rules[i].name for i in self._bands)

    @property
    def thresholds(self) -> tuple[float, ...]:
        """Interior boundaries between the difficulty-only bands, ascending."""
        return tuple(self._rules[i].dmin or 0.0 for i in self._bands[1:])

    def route(
        self,
        difficulty: float,
        prompt_tokens: int,
        metadata: Mapping[str, str] | None = None,
        requested_model: str | None = None,
    ) -> str:
        """Only the tier name `decide` would pick; for simulations over many records."""
        return self._match(difficulty, prompt_tokens, metadata, requested_model).tier

    def decide(
        self,
        query: str,
        difficulty: float,
        metadata: Mapping[str, str] | None = None,
        requested_model: str | None = None,
    ) -> Decision:
        """Pick the tier and compute budget for one query; pure, no I/O."""
        tokens = (len(query) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN  # estimate_tokens, inlined
        rule = self._match(difficulty, tokens, metadata, requested_model)
        plan = rule.plan
        cost = plan.cost_per_prompt_token * tokens + plan.cost_fixed
        if 0.0 <= difficulty <= 1.0:
            head = f"difficulty {difficulty:.3f}; {rule.label}"
        else:
            head = f"difficulty {difficulty} is not in [0, 1], so rules on difficulty were skipped; {rule.label}"
        return Decision(
            rule.tier,
            plan.config.strategy,
            rule.name,
            cost,
            (head, plan.why, f"expected cost ${cost:.6f} for ~{tokens} prompt tokens"),
            self._version,
            difficulty,
            tokens,
            plan.fallbacks,
            plan.escalation,
        )

    def _match(
        self,
        difficulty: float,
        tokens: int,
        metadata: Mapping[str, str] | None,
        requested_model: str | None,
    ) -> _CompiledRule:
        valid = 0.0 <= difficulty <= 1.0  # False for NaN too
        for rule in self._rules:
            if rule.dmin is not None and not (valid and rule.dmin <= difficulty < rule.dmax):
                continue
            if not rule.tmin <= tokens < rule.tmax:
                continue
            if rule.models is not None and requested_model not in rule.models:
                continue
            if rule.metadata and (
                metadata is None or any(metadata.get(k) != v for k, v in rule.metadata)
            ):
                continue
            return rule
        return self._rules[-1]  # the default rule; checks guarantee it is last and unconditional

    def forced(self, tier: str, query: str) -> Decision:
        """The decision when a caller names the tier: that tier, its strategy, fallbacks and escalation."""
        if tier not in self.tier_names:
            raise ConfigError(f"No tier named {tier!r}; the tiers are: {', '.join(self.tier_names)}.")
        tokens = estimate_tokens(query)
        return Decision(
            tier=tier,
            strategy=self.tier(tier).strategy,
            rule=FORCED_RULE,
            expected_cost_usd=self.expected_cost(tier, tokens),
            reasons=(f"tier '{tier}' was named by the caller",),
            policy_version=self._version,
            difficulty=float("nan"),
            prompt_tokens=tokens,
            fallbacks=self.fallbacks(tier),
            escalation=self.escalation(tier),
        )

    def pinned(self, tier: str, query: str, difficulty: float, reason: str) -> Decision:
        """The decision for a conversation held on the tier it reached: that tier, the first turn's difficulty kept."""
        decision = self.forced(tier, query)
        return replace(decision, rule=SESSION_PIN_RULE, reasons=(reason,), difficulty=difficulty)

    def with_capabilities(self, decision: Decision, needs: frozenset[Capability]) -> Decision | None:
        """`decision` moved to a tier that has every capability in `needs` (images, audio, files), or None when none has.

        The nearest such tier at or above the decided one in cost is taken (the classifier's
        judgement of the text stands, and images or audio never make an answer cheaper), else the dearest below.
        """
        if needs <= self._plans[decision.tier].config.capabilities:
            return decision
        order = self._by_cost
        position = order.index(decision.tier)
        able = [name for name in order if needs <= self._plans[name].config.capabilities]
        above = [name for name in order[position:] if name in able]
        below = [name for name in reversed(order[:position]) if name in able]
        if not above and not below:
            return None
        name = (above or below)[0]
        plan = self._plans[name]
        taken = " and ".join(sorted(needs))
        return replace(
            decision,
            tier=name,
            strategy=plan.config.strategy,
            expected_cost_usd=plan.cost(decision.prompt_tokens),
            reasons=(*decision.reasons, f"the request needs {taken}: tier '{name}' is the nearest that takes it"),
            fallbacks=plan.fallbacks,
            escalation=plan.escalation,
        )

    def passthrough(self, model: str, query: str) -> Decision:
        """The decision for a model forwarded untouched: one direct call, then the pass-through fallbacks."""
        config = self._config.server.passthrough
        tokens = estimate_tokens(query)
        cost = 0.0
        if self._passthrough_price is not None:
            price = self._passthrough_price  # no output estimate for an unknown model: its limit is the bound
            cost = tokens * price.input_per_token + config.max_tokens * price.output_per_token
        return Decision(
            tier=PASSTHROUGH,
            strategy=_DIRECT,
            rule=PASSTHROUGH,
            expected_cost_usd=cost,
            reasons=(f"model {model!r} is forwarded untouched (server.passthrough.models)",),
            policy_version=self._version,
            difficulty=float("nan"),
            prompt_tokens=tokens,
            fallbacks=tuple(config.fallbacks),
            upstream_model=model,
        )

    def apply_budget(self, decision: Decision, spent_today_usd: float = 0.0) -> BudgetVerdict:
        """Hold `decision` against the budgets: allow it, downgrade to a cheaper tier that fits, or refuse."""
        budgets = self._config.budgets
        limits: list[tuple[float, str]] = []
        if budgets.max_cost_per_request_usd is not None:
            limits.append(
                (
                    budgets.max_cost_per_request_usd,
                    f"the per-request limit ${budgets.max_cost_per_request_usd:g}",
                )
            )
        if budgets.per_key_daily_usd is not None:
            left = budgets.per_key_daily_usd - spent_today_usd
            daily = f"${budgets.per_key_daily_usd:g}"
            # Concurrent reservations can push the spend past the limit: never print a negative amount.
            text = (
                f"the ${left:.6f} left of the key's daily budget {daily}"
                if left > 0
                else f"the key's daily budget {daily}, which is used up for today (UTC)"
            )
            limits.append((left, text))
        if not limits:
            return BudgetVerdict("allow", decision, None, "no budget is set")
        limit, limit_text = min(limits)
        cost = decision.expected_cost_usd
        if cost <= limit:
            return BudgetVerdict(
                "allow", decision, limit, f"expected ${cost:.6f} is within {limit_text}"
            )
        over = f"expected ${cost:.6f} on tier '{decision.tier}' exceeds {limit_text}"
        if budgets.on_exceeded == "downgrade":
            # The smallest step down that fits keeps as much quality as the budget allows.
            for name in reversed(self._by_cost):
                plan = self._plans[name]
                new_cost = plan.cost(decision.prompt_tokens)
                if new_cost < cost and new_cost <= limit:
                    reason = f"{over}; downgraded to tier '{name}' (expected ${new_cost:.6f})"
                    downgraded = replace(
                        decision,
                        tier=name,
                        strategy=plan.config.strategy,
                        expected_cost_usd=new_cost,
                        reasons=(*decision.reasons, reason),
                        fallbacks=plan.fallbacks,
                        escalation=plan.escalation,
                    )
                    return BudgetVerdict("downgrade", downgraded, limit, reason)
            return BudgetVerdict(
                "refuse", decision, limit, f"{over}, and no cheaper tier fits; refused"
            )
        return BudgetVerdict("refuse", decision, limit, f"{over}; refused (on_exceeded: refuse)")

    def with_thresholds(self, thresholds: Sequence[float]) -> Policy:
        """A copy whose difficulty-only bands are split at `thresholds` (ascending, inside (0, 1))."""
        if len(thresholds) != len(self._bands) - 1:
            raise ValueError(f"expected {len(self._bands) - 1} thresholds, got {len(thresholds)}")
        edges = [0.0, *thresholds, 1.0]
        if any(low >= high for low, high in itertools.pairwise(edges)):
            raise ValueError(
                f"thresholds must ascend strictly inside (0, 1), got {list(thresholds)}"
            )
        rules = list(self._config.rules)
        for position, index in enumerate(self._bands):
            rule = rules[index]
            band = band_of(rule)
            if rule.when is None or band is None:  # unreachable: _bands lists band rules only
                continue
            band = band.model_copy(update={"min": edges[position], "max": edges[position + 1]})
            when = rule.when.model_copy(update={"difficulty": band})
            rules[index] = rule.model_copy(update={"when": when})
        config = self._config.model_copy(update={"rules": rules})
        prices = {name: plan.price for name, plan in self._plans.items()}
        if self._passthrough_price is not None:
            prices[PASSTHROUGH] = self._passthrough_price
        return Policy(config, prices, version=f"{self._version}+calibrating", source=self._source)

    def __repr__(self) -> str:
        return (
            f"Policy(source={self._source!r}, version={self._version!r}, tiers={list(self._plans)})"
        )
