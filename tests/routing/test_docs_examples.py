"""The route header shown in docs/routing.md is one the policy would send: the
example's score and threshold give the group it names (score >= threshold: strong)."""

from __future__ import annotations

import re
from pathlib import Path

from interlock.catalog import Catalog, Deployment
from interlock.openai_request import parse_chat_request
from interlock.routing.policy import RoutingPolicy
from interlock.routing.settings import RoutingSettings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


class FixedScore:
    """A learned router whose P(strong wins) is the same for every prompt."""

    models = ("high-quality", "budget")

    def __init__(self, score: float) -> None:
        self.score = score

    def win_prob(self, prompts: list[str], strong: str, weak: str) -> list[float]:
        return [self.score for _ in prompts]


async def test_the_documented_route_header_is_what_the_policy_sends() -> None:
    found = re.search(r"`(router=mf; group=[\w-]+; score=([\d.]+); threshold=([\d.]+))`",
                      DOCS.read_text())
    assert found is not None, "docs/routing.md lost its example route header"
    header, score, threshold = found[1], float(found[2]), found[3]
    catalog = Catalog.from_deployments(
        Deployment(name=f"{g}/openai/m", group=g, provider="openai", model="m")
        for g in ("high-quality", "budget"))
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"strong_group": "high-quality", "weak_group": "budget"}), catalog)
    policy._learned["mf"] = FixedScore(score)
    decision = await policy.decide(parse_chat_request(
        {"model": f"router-mf-{threshold}", "messages": [{"role": "user", "content": "hi"}]}))
    assert decision.header_value() == header
