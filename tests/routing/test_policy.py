"""The routing policy: plain groups, routed groups, aliases, and failure to default."""

from __future__ import annotations

import pytest

from interlock.catalog import Catalog, Deployment
from interlock.errors import ConfigError, InvalidRequest, UnknownModel
from interlock.openai_request import parse_chat_request
from interlock.routing.policy import RoutingPolicy, parse_router_alias
from interlock.routing.settings import RoutingSettings


def catalog(*groups: str) -> Catalog:
    return Catalog.from_deployments(
        Deployment(name=f"{g}/openai/m", group=g, provider="openai", model="m") for g in groups)


def request(model: str, text: str = "hello"):
    return parse_chat_request({"model": model, "messages": [{"role": "user", "content": text}]})


RULES = {"type": "rules", "default": "cheap",
         "rules": [{"name": "code", "group": "smart", "when": {"regex": "code"}}]}


@pytest.mark.parametrize(("name", "expected"), [
    ("router-mf-0.116", ("mf", 0.116)),
    ("router-sw_ranking-0.5", ("sw_ranking", 0.5)),
    ("router-knn-1", ("knn", 1.0)),
    ("router-mf", None),
    ("gpt-4o", None),
    ("router-mf-abc", None),
    ("router-mf-6.40848e-06", ("mf", 6.40848e-06)),  # as Python prints small floats
    ("router-mf-1e-3", ("mf", 0.001)),
    ("router-mf--1", None),
])
def test_router_alias_parsing(name, expected):
    assert parse_router_alias(name) == expected


async def test_plain_group_is_direct_and_unknown_lists_known_names():
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"routers": {"tiers": RULES}, "groups": {"auto": {"router": "tiers"}}}),
        catalog("smart", "cheap"))
    decision = await policy.decide(request("smart"))
    assert (decision.group, decision.router) == ("smart", "direct")
    with pytest.raises(UnknownModel) as info:
        await policy.decide(request("nope"))
    assert "auto" in info.value.message and "smart" in info.value.message


async def test_routed_group_uses_its_rules():
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"routers": {"tiers": RULES}, "groups": {"auto": {"router": "tiers"}}}),
        catalog("smart", "cheap"))
    code = await policy.decide(request("auto", "write code"))
    chat = await policy.decide(request("auto", "hi"))
    assert (code.group, code.router, code.requested) == ("smart", "tiers", "auto")
    assert "code" in code.reason
    assert chat.group == "cheap"
    assert code.elapsed_ms >= 0


async def test_a_failing_router_serves_the_default_group_and_counts_the_error():
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"default_group": "cheap", "routers": {"tiers": RULES},
         "groups": {"auto": {"router": "tiers"}}}), catalog("smart", "cheap"))

    class Broken:
        def route(self, _request):
            raise RuntimeError("boom")

    policy._rules["tiers"] = Broken()  # type: ignore[assignment]
    decision = await policy.decide(request("auto", "write code"))
    assert decision.group == "cheap"
    assert decision.error == "RuntimeError"
    assert policy.errors == 1


async def test_random_alias_routes_between_strong_and_weak():
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"strong_group": "smart", "weak_group": "cheap"}), catalog("smart", "cheap"))
    seen = {(await policy.decide(request("router-random-0.5", f"prompt {i}"))).group
            for i in range(60)}
    assert seen == {"smart", "cheap"}
    # A seeded coin per prompt: the same prompt routes the same way every time.
    again = {(await policy.decide(request("router-random-0.5", "same"))).score
             for _ in range(20)}
    assert len(again) == 1
    always = await policy.decide(request("router-random-0"))
    assert always.group == "smart" and always.threshold == 0


async def test_an_alias_without_strong_and_weak_groups_says_what_to_configure():
    policy = RoutingPolicy(RoutingSettings.model_validate({}), catalog("smart", "cheap"))
    with pytest.raises(UnknownModel) as info:
        await policy.decide(request("router-random-0.5"))
    assert "routing.strong_group" in info.value.message and "smart" in info.value.message
    with pytest.raises(UnknownModel) as plain:
        await policy.decide(request("nope"))
    assert "strong_group" not in plain.value.message  # only router- names get the hint


def test_routing_that_names_unknown_groups_fails_at_load():
    with pytest.raises(ConfigError, match="ghost"):
        RoutingPolicy(RoutingSettings.model_validate(
            {"routers": {"tiers": {**RULES, "default": "ghost"}}}), catalog("smart", "cheap"))


async def test_an_alias_threshold_outside_zero_to_one_is_refused():
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"strong_group": "smart", "weak_group": "cheap"}), catalog("smart", "cheap"))
    with pytest.raises(InvalidRequest, match=r"threshold 1.5.*must lie in \[0, 1\]"):
        await policy.decide(request("router-random-1.5"))
    assert (await policy.decide(request("router-random-1"))).group == "cheap"


@pytest.mark.parametrize(("routing", "expected"), [
    ({"routers": {"t": {"type": "rules", "rules": []}}, "groups": {"auto": {"router": "t"}}},
     "a request that no rule matches has no group to go to.*default: GROUP"),
    ({"routers": {"t": {**RULES}}, "groups": {"auto": {"router": "t", "threshold": 0.5}}},
     "sets threshold, which only learned routers read.*rules router"),
    ({"groups": {"auto": {"router": "random"}}},
     "learned router and this group has no strong and weak"),
    ({"groups": {"auto": {"router": "random", "strong": "smart"}}}, "has no weak"),
    ({"groups": {"auto": {"router": "random", "strong": "smart", "weak": "cheap",
                          "threshold": 5}}}, r"expected a probability in \[0, 1\].*input_value=5"),
    ({"groups": {"auto": {"router": "random", "strong": "smart", "weak": "cheap",
                          "threshold": -0.1}}}, r"expected a probability in \[0, 1\]"),
    ({"groups": {"auto": {"router": "random", "members": ["smart", "cheap"]}}},
     "built-in random router routes between strong and weak only"),
    ({"groups": {"auto": {"router": "random", "strong": "smart", "weak": "cheap",
                          "members": ["smart", "cheap"], "cost_weight": 1}}},
     "sets strong, weak .*and members, cost_weight"),
    ({"strong_group": "smart"}, "strong_group is set without routing.weak_group"),
])
def test_routing_that_would_fail_or_misroute_requests_is_refused(routing, expected):
    with pytest.raises(ValueError, match=expected):
        RoutingSettings.model_validate(routing)


async def test_a_failing_rules_router_falls_back_to_its_own_default():
    # No routing.default_group: the router's own default serves, never a group "".
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"routers": {"tiers": RULES}, "groups": {"auto": {"router": "tiers"}}}),
        catalog("smart", "cheap"))

    class Broken:
        default = "cheap"

        def route(self, _request):
            raise RuntimeError("boom")

    policy._rules["tiers"] = Broken()  # type: ignore[assignment]
    decision = await policy.decide(request("auto", "write code"))
    assert (decision.group, decision.error) == ("cheap", "RuntimeError")


NESTED = {"routers": {"tiers": {"type": "rules", "default": "cheap", "rules": [
              {"name": "hard", "group": "smart", "when": {"regex": "prove"}}]}},
          "groups": {"auto": {"router": "tiers"},
                     "smart": {"router": "random", "strong": "smart-m", "weak": "cheap",
                               "threshold": 0}}}


async def test_rules_may_send_to_a_routed_group_which_then_decides():
    policy = RoutingPolicy(RoutingSettings.model_validate(NESTED),
                           catalog("smart-m", "cheap"))
    nested = await policy.decide(request("auto", "prove this theorem"))
    assert (nested.requested, nested.group, nested.router) == ("auto", "smart-m", "tiers>random")
    assert "rule 'hard' matched; then smart:" in nested.reason and nested.threshold == 0
    plain = await policy.decide(request("auto", "hello"))
    assert (plain.group, plain.router) == ("cheap", "tiers")


@pytest.mark.parametrize(("change", "expected"), [
    ({"smart": {"router": "tiers"}}, "one level of nesting is supported"),
    ({"auto": {"router": "random", "strong": "smart", "weak": "auto", "threshold": 0.5}},
     "one level of nesting is supported"),
    ({"n": {"router": "mf", "members": ["smart", "cheap"]}},
     "members names the routed group 'smart'; expected model groups"),
])
def test_deeper_nesting_and_routed_members_are_refused(change, expected):
    settings = {**NESTED, "groups": {**NESTED["groups"], **change}}
    with pytest.raises(ConfigError, match=expected):
        RoutingPolicy(RoutingSettings.model_validate(
            {**settings, "routers": {**settings["routers"], "mf": {
                "type": "learned", "checkpoint_path": "/nonexistent"}}}),
            catalog("smart-m", "cheap"))


async def test_the_route_header_names_the_rule_and_the_decision_is_logged(caplog):
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"routers": {"tiers": {**RULES, "rules": [
            *RULES["rules"], {"name": "short", "group": "cheap", "when": {"max_chars": 5}}]}},
         "groups": {"auto": {"router": "tiers"}}}), catalog("smart", "cheap"))
    with caplog.at_level("DEBUG", logger="interlock.routing"):
        code = await policy.decide(request("auto", "write code"))
        short = await policy.decide(request("auto", "hi"))
        unmatched = await policy.decide(request("auto", "a longer chat"))
    assert code.header_value() == "router=tiers; group=smart; rule=code"
    # The same group, told apart: a rule chose it, or none matched and the default did.
    assert short.header_value() == "router=tiers; group=cheap; rule=short"
    assert unmatched.header_value() == "router=tiers; group=cheap; rule=(none)"
    logged = [r.getMessage() for r in caplog.records]
    assert any("routed 'auto': router=tiers; group=smart; rule=code; reason: rule 'code' "
               "matched; decided in" in line for line in logged), logged


async def test_the_route_header_names_the_intent():
    intents = {"type": "intents", "default": "cheap", "intents": [
        {"name": "coding", "group": "smart", "utterances": ["fix this python bug"]}]}
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"routers": {"topics": intents}, "groups": {"auto": {"router": "topics"}}}),
        catalog("smart", "cheap"))
    hit = await policy.decide(request("auto", "fix this python bug please"))
    miss = await policy.decide(request("auto", "zzzz qqqq"))
    assert "; intent=coding; " in hit.header_value() and hit.group == "smart"
    assert "; intent=(none); " in miss.header_value() and miss.group == "cheap"


@pytest.mark.parametrize("name", ["router-random--0.1", "router-random-0.5x"])
async def test_a_malformed_alias_threshold_is_told_what_it_must_be(name):
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"strong_group": "smart", "weak_group": "cheap"}), catalog("smart", "cheap"))
    with pytest.raises(InvalidRequest, match=r"threshold must be a number in \[0, 1\]") as info:
        await policy.decide(request(name))
    assert not isinstance(info.value, UnknownModel)


async def test_a_malformed_alias_of_a_router_that_does_not_exist_is_an_unknown_model():
    # Not "threshold 'v2'": there is no router "foo" to have a threshold.
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"strong_group": "smart", "weak_group": "cheap"}), catalog("smart", "cheap"))
    with pytest.raises(UnknownModel) as info:
        await policy.decide(request("router-foo-v2"))
    assert "threshold" not in str(info.value)


async def test_an_alias_for_an_unconfigured_router_lists_the_routers_there_are():
    policy = RoutingPolicy(RoutingSettings.model_validate(
        {"strong_group": "smart", "weak_group": "cheap"}), catalog("smart", "cheap"))
    with pytest.raises(UnknownModel, match=r"No router 'knn' is configured under "
                                           r"routing.routers.*router-random-<threshold>"):
        await policy.decide(request("router-knn-0.5"))
