"""Every strategy the router knows, keyed by its `type`: the one list to extend.

Adding a strategy is a module defining a `Strategy` subclass and one entry in `AnyStrategy`;
router.yaml's schema, the policy's checks and cost estimates, and the executor all read it from here.
"""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import Field

from strategies.best_of_n import BestOfN
from strategies.chain_of_thought import ChainOfThought
from strategies.direct import Direct
from strategies.reasoning import Reasoning
from strategies.self_consistency import SelfConsistency
from strategies.verify import Verify

AnyStrategy = Annotated[
    Direct | ChainOfThought | Reasoning | SelfConsistency | BestOfN | Verify,
    Field(discriminator="type"),
]

STRATEGY_TYPES: tuple[str, ...] = tuple(
    strategy.model_fields["type"].default for strategy in get_args(get_args(AnyStrategy)[0])
)
