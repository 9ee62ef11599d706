"""Choosing deployments inside a group, and whether a prompt fits one.

`rank` orders a group's deployments for one request: by `order` tier (lower
first; no order sorts after every explicit one), then inside a tier by the
routing strategy:

    simple-shuffle   weighted shuffle (Efraimidis-Spirakis keys) by `weight`
                     when a deployment of the tier sets one, else by `rpm`,
                     else by `tpm`, else uniform: LiteLLM's precedence, so a
                     ported config keeps its traffic split
    latency-based    lowest EWMA score first (latency, raised by recent errors);
                     a deployment never measured goes first so it gets measured
    least-busy       fewest calls in flight in this process
    usage-based      weighted shuffle by capacity (rpm, else tpm, else weight)

Deployments that already failed in this request go to the very end, so a
retry prefers any other deployment (even of a higher order) to calling the
one that just failed again.

The prompt's token count comes from `interlock.tokens` (shared with the
budget reservations); it is deliberately rough and errs towards larger counts
only through `pre_call_safety_margin`.

Imports: the standard library, `types`, `catalog`, `dispatch.health`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence

from interlock.catalog import Deployment
from interlock.dispatch.health import DeploymentStats
from interlock.types import ChatRequest

# Assumed completion size for the tpm reservation when max_tokens is not set.
DEFAULT_OUTPUT_ESTIMATE = 256
ERROR_PENALTY_MS = 1000.0


def estimate_request_tokens(request: ChatRequest, prompt_tokens: int) -> int:
    """Input plus expected output, reserved against tpm before the call."""
    return prompt_tokens + (request.max_tokens or DEFAULT_OUTPUT_ESTIMATE)


def info_limit(deployment: Deployment, name: str) -> int | None:
    """A token limit from the deployment's model_info, when a positive number."""
    value = deployment.model_info.get(name)
    return int(value) if isinstance(value, int | float) and value > 0 else None


def context_limit(deployment: Deployment) -> int | None:
    # Its own field read directly: this runs per candidate per request with
    # enable_pre_call_checks.
    return deployment.max_input_tokens or info_limit(deployment, "max_input_tokens")


# The estimate counts four characters a token; English runs nearer five, so it
# may be a quarter over the real count. Against a limit the operator set, the
# estimate and the margin decide (their choice); against a model table's window
# only a prompt surely over it is skipped, since refusing one that fits is worse
# than the one failed call and context-window fallback the rest costs.
LISTED_WINDOW_ESTIMATE_SHARE = 0.75


def limit_said(deployment: Deployment) -> str:
    """The input limit a prompt did not fit, and where it came from: one taken
    from a model table is not in the operator's config, so say how to change it."""
    source = deployment.max_input_tokens_from
    if deployment.max_input_tokens_listed:
        return (f"its window of {deployment.max_input_tokens} tokens (from {source}; "
                "set max_input_tokens to change it)")
    said = f"its max_input_tokens of {context_limit(deployment)}"
    return f"{said} (from {source})" if source else said


def largest_fitting_estimate(deployment: Deployment, margin: float) -> float | None:
    """The largest prompt estimate the pre-call checks let through to this
    deployment (`interlock check` shows it); None: it has no input limit."""
    limit = context_limit(deployment)
    if limit is None:
        return None
    if deployment.max_input_tokens_listed:
        return limit / LISTED_WINDOW_ESTIMATE_SHARE
    return limit * (1.0 - margin)


def fits(deployment: Deployment, prompt_tokens: int, margin: float) -> bool:
    largest = largest_fitting_estimate(deployment, margin)
    return largest is None or prompt_tokens <= largest


def _weighted_shuffle(items: Sequence[Deployment], weights: Sequence[float],
                      rng: random.Random) -> list[Deployment]:
    def key(i: int) -> float:
        w = weights[i]
        return rng.random() ** (1.0 / w) if w > 0 else -1.0

    return [items[i] for i in sorted(range(len(items)), key=key, reverse=True)]


def _capacity(d: Deployment) -> float:
    return float(d.rpm or d.tpm or _weight(d))


def _weight(d: Deployment) -> float:
    return 1.0 if d.weight is None else d.weight


def shuffle_weights(tier: Sequence[Deployment]) -> list[float]:
    """The simple-shuffle weights of one order tier.

    The first of `weight`, `rpm`, `tpm` that any deployment of the tier sets
    decides for the whole tier, as in LiteLLM (which looks at the first
    deployment only; any one here, so listing order does not matter). In that
    field a deployment without a value counts as weight's default, 1, or as 0
    for rpm/tpm (no share, as in LiteLLM: it is tried once the others are not
    available).
    """
    if any(d.weight is not None for d in tier):
        return [_weight(d) for d in tier]
    if any(d.rpm is not None for d in tier):
        return [float(d.rpm or 0) for d in tier]
    if any(d.tpm is not None for d in tier):
        return [float(d.tpm or 0) for d in tier]
    return [1.0] * len(tier)


def _order_tier(tier: Sequence[Deployment], strategy: str, stats: Mapping[str, DeploymentStats],
                rng: random.Random) -> list[Deployment]:
    if strategy == "usage-based":
        return _weighted_shuffle(tier, [_capacity(d) for d in tier], rng)
    shuffled = _weighted_shuffle(tier, shuffle_weights(tier), rng)
    if strategy == "latency-based":
        return sorted(shuffled, key=lambda d: _stat(stats, d).score(ERROR_PENALTY_MS))
    if strategy == "least-busy":
        return sorted(shuffled, key=lambda d: _stat(stats, d).in_flight)
    return shuffled


def _stat(stats: Mapping[str, DeploymentStats], d: Deployment) -> DeploymentStats:
    return stats.get(d.name) or DeploymentStats()


def rank(deployments: Sequence[Deployment], *, strategy: str,
         stats: Mapping[str, DeploymentStats], rng: random.Random,
         failed: Collection[str] = ()) -> list[Deployment]:
    """The order in which to try a group's deployments for one request."""
    if len(deployments) == 1:  # the common case: nothing to order, no random draws
        return list(deployments)
    tiers: dict[float, list[Deployment]] = {}
    for d in deployments:
        tiers.setdefault(math.inf if d.order is None else d.order, []).append(d)
    ranked: list[Deployment] = []
    for level in sorted(tiers):
        ranked.extend(_order_tier(tiers[level], strategy, stats, rng))
    fresh = [d for d in ranked if d.name not in failed]
    return fresh + [d for d in ranked if d.name in failed]
