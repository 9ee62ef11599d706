"""LiteLLM's `Router.get_model_group_info`: what one model group offers, summed
up over its deployments, for code that sizes prompts or estimates cost before
calling.

Imports: the standard library, `catalog`, `costs.prices`, `dispatch.selection`,
`responses`.
"""

from __future__ import annotations

from collections.abc import Iterable

from interlock.catalog import ModelGroup
from interlock.costs.prices import PriceBook
from interlock.dispatch.selection import context_limit, info_limit
from interlock.responses import OpenAIObject


def model_group_info(name: str, group: ModelGroup, prices: PriceBook) -> OpenAIObject:
    """`name` (a group, or an alias of `group`) as LiteLLM's ModelGroupInfo
    describes one: attribute and dict access, no credentials. As there, the
    limits and prices are the largest any deployment has (a deployment the call
    may land on), and rpm/tpm the group's total over the deployments that set one;
    None where no deployment says."""
    deployments = group.deployments
    priced = [p for p in map(prices.price_for, deployments) if p is not None]
    return OpenAIObject({
        "model_group": name,
        "providers": sorted({d.provider for d in deployments}),
        "max_input_tokens": _largest(map(context_limit, deployments)),
        "max_output_tokens": _largest(d.max_output_tokens or info_limit(d, "max_output_tokens")
                                      for d in deployments),
        "input_cost_per_token": _largest(float(p.input_per_token) for p in priced),
        "output_cost_per_token": _largest(float(p.output_per_token) for p in priced),
        "rpm": _total(d.rpm for d in deployments),
        "tpm": _total(d.tpm for d in deployments),
    })


def _largest(values: Iterable[float | None]) -> float | None:
    # Typed as float, which takes the token counts too; an int stays an int.
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _total(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
