"""N-model routed groups price their members as cost is recorded: deployment
fields, then the config's `prices:`, then genai-prices. A member nothing prices is
refused at load, since counting it as free would make it win every comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interlock.config import load_config
from interlock.errors import ConfigError
from interlock.gateway import Gateway
from interlock.openai_request import parse_chat_request
from interlock.routing.data import OutcomeTable
from interlock.routing.features import HashedNgramFeaturizer
from interlock.routing.learned import make_router

# Listed most expensive first: with every member free, the first one won.
GROUPS = {"big": "openai/gpt-4o", "small": "openai/gpt-4o-mini"}


@pytest.fixture(scope="module")
def knn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knn router that predicts both members right on every prompt."""
    prompts = [f"question number {i} about topic {i % 7}" for i in range(40)]
    table = OutcomeTable(prompts, list(GROUPS), np.ones((len(prompts), len(GROUPS))))
    router = make_router("knn")
    router.fit(table, HashedNgramFeaturizer(n_features=2**10, dim=8), seed=0)
    out = tmp_path_factory.mktemp("knn")
    router.save(out)
    return out


def config(knn_dir: Path, *, groups: dict[str, str] = GROUPS, **routed: Any) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": g, "litellm_params": {"model": m, "api_key": "k"}}
                       for g, m in groups.items()],
        "general_settings": {"allow_unauthenticated": True},
        "routing": {"routers": {"knn": {"type": "learned", "checkpoint_path": str(knn_dir)}},
                    "groups": {"auto": {"router": "knn", "members": list(groups), **routed}}},
    }


async def decide(cfg: dict[str, Any]) -> str:
    gateway = Gateway(load_config(cfg, environ={}), environ={})
    try:
        request = parse_chat_request(
            {"model": "auto", "messages": [{"role": "user", "content": "question number 3"}]})
        return (await gateway.routing.decide(request)).group
    finally:
        await gateway.aclose()


@pytest.mark.parametrize("policy", [{"quality_target": 0.5}, {"cost_weight": 1.0}])
async def test_members_are_priced_from_genai_prices(knn_dir: Path, policy: dict) -> None:
    # Both reach the target; gpt-4o-mini costs a fraction of gpt-4o in genai-prices.
    assert await decide(config(knn_dir, **policy)) == "small"


async def test_the_config_prices_section_prices_a_member(knn_dir: Path) -> None:
    groups = {"big": "openai/gpt-4o", "small": "openai/house-model-7b"}
    cfg = config(knn_dir, groups=groups, quality_target=0.5)
    cfg["prices"] = {"house-model-7b": {"input_cost_per_million": 0.01,
                                        "output_cost_per_million": 0.02}}
    assert await decide(cfg) == "small"
    cfg["prices"] = {"house-model-7b": {"input_cost_per_million": 50,
                                        "output_cost_per_million": 100}}
    assert await decide(cfg) == "big"


def test_a_member_nothing_prices_is_refused_at_load(knn_dir: Path) -> None:
    groups = {"big": "openai/gpt-4o", "small": "openai/house-model-7b"}
    with pytest.raises(ConfigError, match=r"routing.groups.auto: member group 'small' has no "
                                          r"known price.*prices: section"):
        Gateway(load_config(config(knn_dir, groups=groups, cost_weight=1.0), environ={}),
                environ={})


async def test_without_a_price_policy_an_unpriced_member_is_fine(knn_dir: Path) -> None:
    groups = {"big": "openai/gpt-4o", "small": "openai/house-model-7b"}
    assert await decide(config(knn_dir, groups=groups)) in groups


def test_members_that_match_none_of_the_router_s_models_are_refused(knn_dir: Path) -> None:
    groups = {"big": "openai/gpt-4o", "other": "openai/gpt-4o-mini"}
    with pytest.raises(ConfigError, match=r"routing.groups.auto: member group 'other' "
                                          r"matches none of the router's models.*expected"):
        Gateway(load_config(config(knn_dir, groups=groups), environ={}), environ={})
