"""The dispatcher against a scripted fake adapter, in virtual time."""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import fields

import pytest
from tests.dispatch.fakes import Harness, ScriptedAdapter, Step, dep, fail, hang, make, ok, request

import interlock.dispatch.dispatcher as dispatcher_module
from interlock.adapters.http import Timeouts
from interlock.catalog import Deployment
from interlock.dispatch.dispatcher import AT_CAPACITY
from interlock.dispatch.run import Run
from interlock.errors import (
    AuthenticationFailed,
    BadRequest,
    BudgetExceeded,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    NoDeploymentAvailable,
    NotFound,
    Overloaded,
    RateLimited,
    Timeout,
    UnknownModel,
    UnsupportedParameter,
    UpstreamServerError,
)
from interlock.types import ChatRequest, ChatResponse

E500 = fail(UpstreamServerError, 500)


async def test_success_records_one_ok_attempt() -> None:
    h = make([dep("a")])
    result = await h.dispatcher.complete(request(), "g")
    assert result.response.content == "hello from a"
    assert result.deployment.name == "a" and result.group == "g"
    assert [(a.deployment, a.outcome, a.status) for a in result.attempts] == [("a", "ok", 200)]


async def test_unknown_group_raises_unknown_model() -> None:
    h = make([dep("a")])
    with pytest.raises(UnknownModel):
        await h.dispatcher.complete(request(), "nope")


async def test_order_lower_first_next_order_only_when_lower_unavailable() -> None:
    h = make([dep("second", order=2), dep("first", order=1), dep("third", order=3)])
    for _ in range(20):
        assert (await h.dispatcher.complete(request(), "g")).deployment.name == "first"
    # Cool "first" down (auth failure cools at once): traffic moves to order 2 only.
    h.adapter.script("first", fail(AuthenticationFailed, 401))
    result = await h.dispatcher.complete(request(), "g")
    assert [a.outcome for a in result.attempts] == ["AuthenticationFailed", "ok"]
    for _ in range(20):
        assert (await h.dispatcher.complete(request(), "g")).deployment.name == "second"
    assert h.adapter.count("third") == 0


async def test_weight_distribution_follows_weights() -> None:
    h = make([dep("heavy", weight=3.0), dep("light", weight=1.0)], seed=7)
    counts = collections.Counter(
        [(await h.dispatcher.complete(request(), "g")).deployment.name for _ in range(2000)])
    share = counts["heavy"] / 2000
    assert 0.71 <= share <= 0.79, counts  # expected 0.75


async def test_latency_based_prefers_the_fast_deployment() -> None:
    h = make([dep("slow"), dep("fast")], routing_strategy="latency-based")
    h.adapter.script("slow", then=ok(latency=2.0))
    h.adapter.script("fast", then=ok(latency=0.2))
    picks = [(await h.dispatcher.complete(request(), "g")).deployment.name for _ in range(50)]
    # Both are measured first, then the fast one takes the traffic.
    assert set(picks[:2]) == {"slow", "fast"}
    assert picks[2:].count("fast") == 48


async def test_latency_based_moves_away_from_errors() -> None:
    h = make([dep("flaky"), dep("steady")], routing_strategy="latency-based", allowed_fails=100)
    h.adapter.script("flaky", ok(latency=0.1), then=E500)
    h.adapter.script("steady", then=ok(latency=0.3))
    picks = [(await h.dispatcher.complete(request(), "g")).deployment.name for _ in range(30)]
    assert picks[-20:] == ["steady"] * 20


async def test_retry_same_deployment_with_backoff_then_success() -> None:
    h = make([dep("a")], num_retries=2)
    h.adapter.script("a", E500, E500)
    start = h.clock.now()
    result = await h.dispatcher.complete(request(), "g")
    assert [a.outcome for a in result.attempts] == [
        "UpstreamServerError", "UpstreamServerError", "ok"]
    calls = h.adapter.calls
    # Full jitter under 0.1 * 2**n: the waits are bounded by 0.1 and 0.2.
    assert 0 <= calls[1].at - calls[0].at <= 0.1 + 1e-9
    assert 0 <= calls[2].at - calls[1].at <= 0.2 + 1e-9
    assert h.clock.now() - start <= 0.3 + 1e-9


async def test_retry_prefers_another_deployment_without_waiting() -> None:
    h = make([dep("a", order=1), dep("b", order=2)], num_retries=1)
    h.adapter.script("a", E500)
    start = h.clock.now()
    result = await h.dispatcher.complete(request(), "g")
    assert [(a.deployment, a.outcome) for a in result.attempts] == [
        ("a", "UpstreamServerError"), ("b", "ok")]
    assert h.clock.now() == start


async def test_retry_after_is_waited_when_only_the_same_deployment_is_left() -> None:
    h = make([dep("a")], num_retries=1, allowed_fails=5, cooldown_time=1)
    # Retry-After cools the deployment at once, so the retry waits for recovery.
    h.adapter.script("a", fail(RateLimited, 429, retry_after=3))
    start = h.clock.now()
    result = await h.dispatcher.complete(request(), "g")
    assert result.response.content == "hello from a"
    assert h.clock.now() - start == pytest.approx(3.0, abs=0.01)


async def test_invalid_request_from_adapter_is_raised_at_once() -> None:
    h = make([dep("a"), dep("b")], fallbacks={"g": ["h"]})

    async def invalid(a, r, d, t):
        raise InvalidRequest("messages[0]: the image is not base64.", param="messages")

    h.adapter.default = invalid
    with pytest.raises(InvalidRequest) as info:
        await h.dispatcher.complete(request(), "g")
    assert h.adapter.count() == 1
    assert [a.outcome for a in info.value.attempts] == ["InvalidRequest"]


async def _unsupported(a, r, d, t):
    raise UnsupportedParameter("logprobs", d.provider)


async def test_a_deployment_that_cannot_take_a_parameter_is_passed_over() -> None:
    # A group of Claude and GPT-4o, say, asked for logprobs: only one of them can
    # answer, and a router should not fail the request for picking the other.
    h = make([dep("a", provider="anthropic"), dep("b", group="backup")], num_retries=2,
             fallbacks={"g": ["backup"]})
    h.adapter.script("a", _unsupported)
    result = await h.dispatcher.complete(request(), "g")
    assert (result.deployment.name, result.group) == ("b", "backup")
    assert [a.outcome for a in result.attempts] == ["skipped:unsupported_parameter", "ok"]
    assert h.adapter.count("a") == 1  # not retried: it cannot take the parameter
    assert h.dispatcher.health()[0].state != "cooling"  # nor is it cooled down


async def test_a_parameter_no_candidate_can_take_is_that_error() -> None:
    h = make([dep("a"), dep("b"), dep("c", group="h")], fallbacks={"g": ["h"]})
    h.adapter.default = _unsupported
    with pytest.raises(UnsupportedParameter) as info:
        await h.dispatcher.complete(request(), "g")
    assert h.adapter.count() == 3  # each candidate once
    assert info.value.param == "logprobs" and info.value.status_code == 400
    assert [a.outcome for a in info.value.attempts] == ["skipped:unsupported_parameter"] * 3


async def test_general_fallback_after_retries_are_used_up() -> None:
    h = make([dep("a", group="g"), dep("b", group="backup")], num_retries=1,
             fallbacks=[{"g": ["backup"]}])
    h.adapter.script("a", then=E500)
    result = await h.dispatcher.complete(request(), "g")
    assert result.group == "backup"
    assert [(a.group, a.outcome) for a in result.attempts] == [
        ("g", "UpstreamServerError"), ("g", "UpstreamServerError"), ("backup", "ok")]


async def test_every_request_walks_the_whole_chain_again() -> None:
    """A group's chains are built once and shared by its requests' plans: one
    request walking (and failing through) them leaves them whole for the next,
    and a chain a request narrows is its own."""
    h = make([dep("a", group="g"), dep("b1", group="b"), dep("c1", group="c")],
             num_retries=0, fallbacks={"g": ["b", "c"]})
    h.adapter.script("a", then=E500)
    h.adapter.script("b1", then=E500)
    for _ in range(3):
        result = await h.dispatcher.complete(request(), "g")
        assert [a.group for a in result.attempts] == ["g", "b", "c"]
    narrowed = await h.dispatcher.complete(request(fallbacks=["c"]), "g")
    assert [a.group for a in narrowed.attempts] == ["g", "c"]
    result = await h.dispatcher.complete(request(), "g")
    assert [a.group for a in result.attempts] == ["g", "b", "c"]


async def test_default_fallbacks_apply_to_groups_without_a_chain() -> None:
    h = make([dep("a", group="g"), dep("b", group="spare")], num_retries=0,
             default_fallbacks=["spare"])
    h.adapter.script("a", E500)
    assert (await h.dispatcher.complete(request(), "g")).group == "spare"


async def test_context_window_fallback() -> None:
    h = make([dep("small", group="g"), dep("big", group="long"), dep("other", group="x")],
             fallbacks={"g": ["x"]}, context_window_fallbacks={"g": ["long"]})
    h.adapter.script("small", fail(ContextWindowExceeded, 400))
    result = await h.dispatcher.complete(request(), "g")
    assert result.group == "long"
    assert h.adapter.count("small") == 1 and h.adapter.count("other") == 0


async def test_content_policy_fallback() -> None:
    h = make([dep("strict", group="g"), dep("lenient", group="cp"), dep("o", group="x")],
             fallbacks={"g": ["x"]}, content_policy_fallbacks={"g": ["cp"]})
    h.adapter.script("strict", fail(ContentFiltered, 400))
    assert (await h.dispatcher.complete(request(), "g")).group == "cp"


async def test_per_request_fallbacks_narrow_and_never_widen() -> None:
    deployments = [dep("a", group="g"), dep("b1", group="b"), dep("c1", group="c"),
                   dep("secret1", group="secret")]
    h = make(deployments, num_retries=0, fallbacks={"g": ["b", "c"]})
    h.adapter.script("a", then=E500)
    h.adapter.script("b1", then=E500)
    # "secret" is not in g's chain, so asking for it changes nothing; "c" is kept.
    result = await h.dispatcher.complete(request(fallbacks=["secret", "c"]), "g")
    assert result.group == "c"
    assert h.adapter.count("b1") == 0 and h.adapter.count("secret1") == 0
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(fallbacks=["secret"]), "g")
    assert h.adapter.count("secret1") == 0
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(fallbacks=[]), "g")


async def test_a_request_s_own_context_chain_narrows_only_its_kind() -> None:
    deployments = [dep("small", group="g"), dep("l1", group="long"), dep("h1", group="huge"),
                   dep("x1", group="x"), dep("s1", group="secret")]
    h = make(deployments, num_retries=0, fallbacks={"g": ["x"]},
             context_window_fallbacks={"g": ["long", "huge"]})
    h.adapter.script("small", then=fail(ContextWindowExceeded, 400))
    # A gateway client's chain keeps what the configuration allows, in its order.
    own = {"context_window_fallbacks": ["secret", "huge"]}
    assert (await h.dispatcher.complete(request(kind_fallbacks=own), "g")).group == "huge"
    assert h.adapter.count("s1") == 0 and h.adapter.count("l1") == 0
    with pytest.raises(ContextWindowExceeded):
        await h.dispatcher.complete(
            request(kind_fallbacks={"context_window_fallbacks": ["secret"]}), "g")
    # A library caller's applies as given; the general chain stays configured.
    given = request(kind_fallbacks={"context_window_fallbacks": ["secret"]},
                    fallbacks_as_given=True)
    assert (await h.dispatcher.complete(given, "g")).group == "secret"
    h.adapter.script("small", then=E500)
    only_context = request(kind_fallbacks={"context_window_fallbacks": ["huge"]})
    assert (await h.dispatcher.complete(only_context, "g")).group == "x"


async def test_max_fallbacks_limits_groups_called() -> None:
    groups = ["f1", "f2", "f3"]
    h = make([dep("a", group="g")] + [dep(f"{g}d", group=g) for g in groups],
             num_retries=0, max_fallbacks=2, fallbacks={"g": groups})
    h.adapter.default = E500
    with pytest.raises(UpstreamServerError) as info:
        await h.dispatcher.complete(request(), "g")
    assert {a.group for a in info.value.attempts} == {"g", "f1", "f2"}


async def test_pre_call_checks_skip_without_calling() -> None:
    h = make([dep("small", group="g", max_input_tokens=100),
              dep("mid", group="mid", model_info={"max_input_tokens": 150}),
              dep("big", group="long", max_input_tokens=10_000)],
             enable_pre_call_checks=True, context_window_fallbacks={"g": ["mid", "long"]})
    long_prompt = "x" * 4 * 200  # ~200 tokens
    result = await h.dispatcher.complete(request(long_prompt), "g")
    assert result.group == "long"
    assert h.adapter.count("small") == 0 and h.adapter.count("mid") == 0
    assert [a.outcome for a in result.attempts] == [
        "skipped:context_window", "skipped:context_window", "ok"]
    # A short prompt still goes to the primary.
    assert (await h.dispatcher.complete(request("short"), "g")).group == "g"


async def test_the_prompt_is_sized_only_when_something_needs_its_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import interlock.dispatch.run as run_module

    sized: list[ChatRequest] = []
    real = run_module.estimate_prompt_tokens

    def counting(request: ChatRequest) -> int:
        sized.append(request)
        return real(request)

    monkeypatch.setattr(run_module, "estimate_prompt_tokens", counting)
    plain = make([dep("a")])
    await plain.dispatcher.complete(request(), "g")
    assert sized == []  # no pre-call checks, no tpm: the size is never read
    checked = make([dep("a", max_input_tokens=100)], enable_pre_call_checks=True)
    await checked.dispatcher.complete(request(), "g")
    assert len(sized) == 1


async def test_pre_call_safety_margin() -> None:
    h = make([dep("a", max_input_tokens=100)], enable_pre_call_checks=True,
             pre_call_safety_margin=0.2)
    with pytest.raises(ContextWindowExceeded):  # ~89 tokens > 80 usable
        await h.dispatcher.complete(request("y" * 4 * 85), "g")
    assert h.adapter.count() == 0
    await h.dispatcher.complete(request("y" * 4 * 70), "g")


async def test_bad_request_is_not_retried_on_the_same_deployment() -> None:
    h = make([dep("a", order=1), dep("b", order=2)], num_retries=3)
    h.adapter.script("a", then=fail(BadRequest, 400))
    h.adapter.script("b", then=fail(BadRequest, 400))
    with pytest.raises(BadRequest):
        await h.dispatcher.complete(request(), "g")
    assert h.adapter.count("a") == 1 and h.adapter.count("b") == 1


@pytest.mark.parametrize("retries", [0, 1, 3])
@pytest.mark.parametrize("fallback_groups", [0, 1, 3])
async def test_amplification_bound(retries: int, fallback_groups: int) -> None:
    """upstream attempts <= (num_retries + 1) x (1 + fallback groups tried), and with
    every call failing the bound is reached exactly."""
    chain = [f"f{i}" for i in range(fallback_groups)]
    deployments = [dep(f"g{i}", group="g") for i in range(3)]
    deployments += [dep(f"{g}d{i}", group=g) for g in chain for i in range(3)]
    h = make(deployments, num_retries=retries, fallbacks={"g": chain}, allowed_fails=1000,
             timeout=10_000)
    h.adapter.default = fail(Overloaded, 503)
    with pytest.raises(Overloaded) as info:
        await h.dispatcher.complete(request(), "g")
    groups_called = {a.group for a in info.value.attempts if a.called}
    assert h.adapter.count() == (retries + 1) * len(groups_called)
    assert len(groups_called) == 1 + fallback_groups


async def test_deadline_is_never_exceeded_by_retries_and_fallbacks() -> None:
    h = make([dep("a", group="g"), dep("b", group="f")], timeout=5.0, num_retries=5,
             fallbacks={"g": ["f"]}, allowed_fails=1000, backoff_base=1.0, backoff_max=4.0)
    h.adapter.default = fail(Overloaded, 503, latency=0.7)
    start = h.clock.now()
    # The last attempt may be cut by the deadline itself (Timeout) or fail as scripted.
    with pytest.raises((Overloaded, Timeout)):
        await h.dispatcher.complete(request(), "g")
    assert h.clock.now() - start <= 5.0
    # Every attempt's own total timeout was cut to what was left of the deadline.
    for call in h.adapter.calls:
        assert call.at + call.timeouts.total <= start + 5.0 + 1e-9


async def test_a_request_s_own_timeout_and_num_retries_replace_the_router_s() -> None:
    # LiteLLM's per-call arguments: timeout=2 on a router with timeout=30 gives up
    # after 2 s; num_retries=0 on a router with num_retries=3 makes one call.
    h = make([dep("a")], timeout=30.0, num_retries=3, allowed_fails=1000)
    h.adapter.default = fail(Overloaded, 503)
    with pytest.raises(Overloaded):
        await h.dispatcher.complete(request(num_retries=0), "g")
    assert h.adapter.count() == 1
    with pytest.raises(Overloaded):
        await h.dispatcher.complete(request(), "g")
    assert h.adapter.count() == 1 + 4
    with pytest.raises(Overloaded):
        await h.dispatcher.complete(request(num_retries=5), "g")
    assert h.adapter.count() == 5 + 6

    h.adapter.default = hang()
    start = h.clock.now()
    with pytest.raises(Timeout):
        await h.dispatcher.complete(request(timeout=2.0, num_retries=0), "g")
    assert h.clock.now() - start == pytest.approx(2.0)


async def test_hanging_deployment_times_out_and_fails_over() -> None:
    h = make([dep("hangs", order=1, timeout=2.0), dep("works", order=2)], timeout=30)
    h.adapter.script("hangs", then=hang())
    start = h.clock.now()
    result = await h.dispatcher.complete(request(), "g")
    assert result.deployment.name == "works"
    assert h.clock.now() - start == pytest.approx(2.0)


async def test_model_group_retry_policy_applies_in_its_group_only() -> None:
    from interlock.dispatch.settings import RetryPolicySettings

    h = make([dep("a", group="g"), dep("b", group="f")], num_retries=3, allowed_fails=1000,
             model_group_retry_policy={"g": RetryPolicySettings(InternalServerErrorRetries=0)})
    h.adapter.default = E500
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(), "g")
    assert h.adapter.count("a") == 1
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(), "f")
    assert h.adapter.count("b") == 4
    # A request's own num_retries still wins over the group's policy.
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(num_retries=2), "g")
    assert h.adapter.count("a") == 1 + 3


async def test_disable_cooldowns_keeps_a_failing_deployment_in_rotation() -> None:
    h = make([dep("a")], allowed_fails=0, num_retries=0, disable_cooldowns=True)
    h.adapter.default = E500
    for _ in range(3):
        with pytest.raises(UpstreamServerError):
            await h.dispatcher.complete(request(), "g")
    assert h.adapter.count() == 3  # called every time: never cooling
    assert h.dispatcher.tracker.view(dep("a")).state != "open"


def _tiers(**settings: object) -> Harness:
    return make([dep("free", tags=frozenset({"free"})), dep("paid", tags=frozenset({"paid"})),
                 dep("std", tags=frozenset({"default"}))], **settings)


@pytest.mark.parametrize(("tags", "called"), [
    (["paid"], "paid"), ("free", "free"), (None, "std"), (["paid", "free"], None)])
async def test_tag_filtering_sends_a_request_to_deployments_with_its_tags(
        tags: object, called: str | None) -> None:
    h = _tiers(enable_tag_filtering=True)
    metadata = {} if tags is None else {"tags": [tags] if isinstance(tags, str) else tags}
    for _ in range(6):
        result = await h.dispatcher.complete(request(metadata=metadata), "g")
        if called is not None:
            assert result.deployment.name == called
        else:
            assert result.deployment.name in {"paid", "free"}


async def test_tags_no_deployment_serves_are_a_400_naming_them() -> None:
    h = _tiers(enable_tag_filtering=True)
    with pytest.raises(InvalidRequest) as info:
        await h.dispatcher.complete(request(metadata={"tags": ["gold"]}), "g")
    assert info.value.status_code == 400 and "gold" in info.value.message
    assert h.adapter.count() == 0
    # Untagged groups, and the switch off, route as before.
    plain = make([dep("a"), dep("b")], enable_tag_filtering=True)
    assert (await plain.dispatcher.complete(request(), "g")).deployment.name in {"a", "b"}
    off = _tiers()
    names = {(await off.dispatcher.complete(request(metadata={"tags": ["gold"]}), "g"))
             .deployment.name for _ in range(30)}
    assert names == {"free", "paid", "std"}


async def test_everything_cooling_raises_no_deployment_available_with_retry_after() -> None:
    # Each group falls back to the other: a group's only deployment is cooled only
    # when the group has somewhere else to go.
    h = make([dep("a", group="g"), dep("b", group="f")], fallbacks={"g": ["f"], "f": ["g"]},
             wait_for_recovery=False, cooldown_time=20, allowed_fails=0, num_retries=0)
    h.adapter.default = E500
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(), "g")
    h.clock.advance(5)
    calls = h.adapter.count()
    with pytest.raises(NoDeploymentAvailable) as info:
        await h.dispatcher.complete(request(), "g")
    assert h.adapter.count() == calls  # nothing was called
    assert info.value.retry_after == pytest.approx(15)
    assert info.value.tried == ["g/a", "f/b"]
    assert "g/a" in info.value.message and "f/b" in info.value.message
    assert [a.outcome for a in info.value.attempts] == ["skipped:cooldown"] * 2


async def test_wait_for_recovery_waits_when_the_deadline_allows() -> None:
    # Two deployments, both cooled (a group's only one would not be).
    h = make([dep("a"), dep("b")], wait_for_recovery=True, timeout=30, cooldown_time=8,
             allowed_fails=0, num_retries=1)
    h.adapter.script("a", E500)
    h.adapter.script("b", E500)
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(), "g")
    start = h.clock.now()
    result = await h.dispatcher.complete(request(), "g")
    assert result.response.content.startswith("hello from")
    assert h.clock.now() - start == pytest.approx(8, abs=0.01)
    assert result.attempts[-1].probe


async def test_wait_for_recovery_not_past_the_deadline() -> None:
    h = make([dep("a"), dep("b")], wait_for_recovery=True, timeout=5, cooldown_time=8,
             allowed_fails=0, num_retries=1)
    h.adapter.script("a", E500)
    h.adapter.script("b", E500)
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(), "g")
    start = h.clock.now()
    with pytest.raises(NoDeploymentAvailable):
        await h.dispatcher.complete(request(), "g")
    assert h.clock.now() == start


async def test_half_open_probe_through_the_dispatcher() -> None:
    h = make([dep("a", order=1), dep("b", order=2)], cooldown_time=10, allowed_fails=0,
             num_retries=1)
    h.adapter.script("a", E500)
    await h.dispatcher.complete(request(), "g")  # a fails -> cools; b answers
    for _ in range(5):
        assert (await h.dispatcher.complete(request(), "g")).deployment.name == "b"
    assert h.adapter.count("a") == 1
    h.clock.advance(10)
    probe = await h.dispatcher.complete(request(), "g")
    assert probe.deployment.name == "a" and probe.attempts[0].probe
    assert (await h.dispatcher.complete(request(), "g")).deployment.name == "a"
    assert [row.state for row in h.dispatcher.health() if row.deployment == "a"] == ["healthy"]


async def test_rpm_limit_skips_not_fails() -> None:
    h = make([dep("limited", order=1, rpm=3), dep("spare", order=2)])
    names = [(await h.dispatcher.complete(request(), "g")).deployment.name for _ in range(5)]
    assert names == ["limited"] * 3 + ["spare"] * 2
    assert h.dispatcher.complete  # the limited one was skipped, not failed:
    assert [row.state for row in h.dispatcher.health() if row.deployment == "limited"] == [
        "healthy"]
    h.clock.advance(61)
    assert (await h.dispatcher.complete(request(), "g")).deployment.name == "limited"


async def test_tpm_limit_uses_estimate_then_settles() -> None:
    h = make([dep("t", order=1, tpm=1000), dep("spare", order=2)])
    # Each call reserves ~prompt + 256 tokens but the fake uses 20; settled after.
    names = [(await h.dispatcher.complete(request(), "g")).deployment.name for _ in range(10)]
    assert names == ["t"] * 10
    big = request(max_tokens=2000)
    assert (await h.dispatcher.complete(big, "g")).deployment.name == "spare"


class _Gate:
    def __init__(self, name: str, allow: set[str]) -> None:
        self.name = name
        self.allow = allow
        self.released: list[object] = []

    async def acquire(self, deployment, request):
        if deployment.name not in self.allow:
            return None
        gate = self

        class Ticket:
            async def release(self, response):
                gate.released.append(response)

        return Ticket()


async def test_gate_refusal_skips_and_budget_everywhere_is_budget_exceeded() -> None:
    gate = _Gate("budget", allow={"b"})
    h = make([dep("a", order=1), dep("b", order=2)], gates=[gate])
    result = await h.dispatcher.complete(request(), "g")
    assert [a.outcome for a in result.attempts] == ["skipped:budget", "ok"]
    assert len(gate.released) == 1 and gate.released[0] is result.response
    gate.allow.clear()
    with pytest.raises(BudgetExceeded):
        await h.dispatcher.complete(request(), "g")
    assert h.adapter.count() == 1


async def test_health_rows_and_group_available() -> None:
    h = make([dep("a"), dep("gone", unavailable_reason="OPENAI_API_KEY is not set")],
             cooldown_time=10, allowed_fails=0, num_retries=0)
    # "a" is the group's only available deployment: only a Retry-After cools it.
    h.adapter.script("a", fail(RateLimited, 429, retry_after=10))
    with pytest.raises(RateLimited):
        await h.dispatcher.complete(request(), "g")
    rows = {row.deployment: row for row in h.dispatcher.health()}
    assert rows["a"].state == "cooling" and rows["a"].reason == "RateLimited"
    assert rows["a"].cooldown_remaining_s == pytest.approx(10)
    assert rows["gone"].state == "unavailable" and "OPENAI_API_KEY" in rows["gone"].reason
    assert rows["a"].to_dict()["cooling_until"] is not None
    assert not h.dispatcher.group_available("g")
    h.clock.advance(10)
    assert h.dispatcher.group_available("g")
    assert h.dispatcher.health()[0].state == "half_open"


async def test_a_bounded_request_may_only_lower_its_groups_retries() -> None:
    """A gateway client's num_retries (retries_bounded) is held to each group's own
    policy, a stricter one from model_group_retry_policy included; a library
    caller's replaces the policy."""
    from interlock.dispatch.settings import RetryPolicySettings

    h = make([dep("a", group="g"), dep("b", group="f")], num_retries=3, allowed_fails=1000,
             model_group_retry_policy={"g": RetryPolicySettings(InternalServerErrorRetries=1)})
    h.adapter.default = E500
    for group, asked, calls in (("g", 5, 2), ("g", 0, 1), ("f", 5, 4), ("f", 1, 2)):
        before = h.adapter.count()
        with pytest.raises(UpstreamServerError):
            await h.dispatcher.complete(request(num_retries=asked, retries_bounded=True), group)
        assert h.adapter.count() - before == calls, (group, asked)
    before = h.adapter.count()
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(num_retries=5), "g")
    assert h.adapter.count() - before == 6


def _slow(seconds: float) -> Step:
    """A step that takes real time and ignores its timeouts, as a buggy adapter might."""
    async def step(a: ScriptedAdapter, r: ChatRequest, d: Deployment, t: Timeouts
                   ) -> ChatResponse:
        await asyncio.sleep(seconds)
        return ChatResponse(id="r", model=d.model, content="late")
    return step


async def test_an_adapter_that_overruns_its_timeout_is_cut_off_by_the_guard(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "GUARD_GRACE", 0.01)
    h = make([dep("a", timeout=0.05)], num_retries=0)
    h.adapter.script("a", _slow(5.0))
    with pytest.raises(Timeout, match="overran"):
        await h.dispatcher.complete(request(), "g")


async def test_an_adapter_that_keeps_time_itself_is_not_guarded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Such an adapter bounds its own calls; the dispatcher adds no timer of its own.
    monkeypatch.setattr(dispatcher_module, "GUARD_GRACE", 0.01)
    h = make([dep("a", timeout=0.05)], num_retries=0)
    monkeypatch.setattr(h.adapter, "keeps_time", True, raising=False)
    h.adapter.script("a", _slow(0.2))
    assert (await h.dispatcher.complete(request(), "g")).response.content == "late"


def test_run_and_timeouts_field_order_that_the_dispatcher_builds_them_in() -> None:
    # The dispatcher builds both positionally (a class call's keyword arguments
    # cost a dict each time); a reordered field must fail here, not mislabel a value.
    assert [f.name for f in fields(Run)][:6] == [
        "request", "origin", "stream", "deadline", "plan", "known_prompt_tokens"]
    assert [f.name for f in fields(Timeouts)] == ["connect", "total", "first_token", "idle"]


# -- max_parallel_requests ---------------------------------------------------------
def _most_at_once(h: Harness, latency: float) -> int:
    """The most calls the adapter had running at one time (each lasts `latency`)."""
    starts = sorted(c.at for c in h.adapter.calls)
    return max(sum(1 for s in starts if s <= t < s + latency) for t in starts)


async def test_a_capped_deployment_takes_its_calls_one_slot_at_a_time() -> None:
    # LiteLLM's max_parallel_requests: the others wait for a slot, in turn.
    h = make([dep("a", max_parallel_requests=2)])
    h.adapter.script("a", then=ok(latency=1.0))
    start = h.clock.now()
    results = await asyncio.gather(*(h.dispatcher.complete(request(), "g") for _ in range(5)))
    assert all(r.response.content == "hello from a" for r in results)
    assert _most_at_once(h, 1.0) == 2
    assert [c.at - start for c in h.adapter.calls] == [0, 0, 1, 1, 2]
    # Waiting is not a failure: each request made one call and skipped nothing it
    # did not then take.
    assert all([a.outcome for a in r.attempts][-1] == "ok" for r in results)
    assert h.dispatcher.health()[0].in_flight == 0


async def test_a_full_deployment_spills_to_the_next_before_anyone_waits() -> None:
    h = make([dep("a", order=1, max_parallel_requests=1), dep("b", order=2)])
    h.adapter.script("a", then=ok(latency=1.0))
    h.adapter.script("b", then=ok(latency=1.0))
    results = await asyncio.gather(*(h.dispatcher.complete(request(), "g") for _ in range(3)))
    assert sorted(r.deployment.name for r in results) == ["a", "b", "b"]
    assert h.clock.now() - 1000.0 == pytest.approx(1.0)  # nobody waited
    skipped = [a for r in results for a in r.attempts if a.outcome.endswith(AT_CAPACITY)]
    assert skipped and all(a.deployment == "a" and not a.called for a in skipped)


async def test_without_wait_for_recovery_a_full_group_is_refused_at_once() -> None:
    h = make([dep("a", max_parallel_requests=1)], wait_for_recovery=False)
    h.adapter.script("a", then=ok(latency=1.0))
    first = asyncio.ensure_future(h.dispatcher.complete(request(), "g"))
    await asyncio.sleep(0)
    with pytest.raises(NoDeploymentAvailable, match=r"max_parallel_requests.*1 calls in flight"):
        await h.dispatcher.complete(request(), "g")
    assert (await first).deployment.name == "a"


async def test_a_wait_for_a_slot_ends_at_the_request_s_deadline() -> None:
    h = make([dep("a", max_parallel_requests=1)])
    h.adapter.script("a", then=ok(latency=5.0))
    first = asyncio.ensure_future(h.dispatcher.complete(request(timeout=10), "g"))
    await asyncio.sleep(0)
    start = h.clock.now()
    with pytest.raises(NoDeploymentAvailable):
        await h.dispatcher.complete(request(timeout=2), "g")
    assert h.clock.now() - start == pytest.approx(2.0)
    await first
    assert h.adapter.count("a") == 1


async def test_slots_come_back_after_failures_streams_and_cancellations() -> None:
    h = make([dep("a", max_parallel_requests=1)], num_retries=0)
    # A failed call gives its slot back...
    h.adapter.script("a", E500)
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(), "g")
    # ...so does a stream once it has been read to its end...
    h.state.record_success_now("a", probe=False)
    stream = await h.dispatcher.open_stream(request(stream=True), "g")
    assert h.dispatcher.health()[0].in_flight == 1
    assert "".join([d.text or "" async for d in stream]) == "hello from a"
    assert h.dispatcher.health()[0].in_flight == 0
    # ...and a call whose request was cancelled (the client left).
    h.adapter.script("a", ok(latency=5.0))
    task = asyncio.ensure_future(h.dispatcher.complete(request(), "g"))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.dispatcher.health()[0].in_flight == 0
    assert (await h.dispatcher.complete(request(), "g")).deployment.name == "a"


async def test_a_request_cancelled_in_its_backoff_gives_its_slot_back() -> None:
    h = make([dep("a", max_parallel_requests=1)], num_retries=1, allowed_fails=5,
             backoff_base=10, backoff_max=10, auto_advance=False)
    h.adapter.script("a", E500)
    task = asyncio.ensure_future(h.dispatcher.complete(request(), "g"))
    for _ in range(20):
        await asyncio.sleep(0)
    # The first call failed; the retry holds its slot while it waits its backoff.
    assert h.adapter.count("a") == 1 and not task.done()
    assert h.dispatcher.health()[0].in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.dispatcher.health()[0].in_flight == 0


async def test_a_request_cancelled_at_a_gate_gives_back_its_admission_and_slot() -> None:
    class WaitingGate:
        name = "budget"

        def __init__(self) -> None:
            self.entered = asyncio.Event()
            self.open = asyncio.Event()

        async def acquire(self, deployment: Deployment, request: ChatRequest) -> object:
            self.entered.set()
            await self.open.wait()
            return _Ticket()

    class _Ticket:
        async def release(self, response: ChatResponse | None) -> None:
            return None

    gate = WaitingGate()
    # rpm 1: an admission kept by the cancelled request would refuse the next one.
    h = make([dep("a", rpm=1, max_parallel_requests=1)], gates=[gate], wait_for_recovery=False)
    task = asyncio.ensure_future(h.dispatcher.complete(request(), "g"))
    await gate.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.dispatcher.health()[0].in_flight == 0
    gate.open.set()
    assert (await h.dispatcher.complete(request(), "g")).deployment.name == "a"


async def test_a_request_cancelled_at_a_second_gate_releases_the_first_gate_s_ticket() -> None:
    class Stuck:
        name = "rpm"

        def __init__(self) -> None:
            self.entered = asyncio.Event()

        async def acquire(self, deployment: Deployment, request: ChatRequest) -> object:
            self.entered.set()
            await asyncio.Event().wait()  # until cancelled
            raise AssertionError("not reached")

    first, second = _Gate("budget", allow={"a"}), Stuck()
    h = make([dep("a")], gates=[first, second])
    task = asyncio.ensure_future(h.dispatcher.complete(request(), "g"))
    await second.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The first gate's ticket went back as an attempt that never ran (no response).
    assert first.released == [None]
    assert h.dispatcher.health()[0].in_flight == 0


async def test_every_ticket_is_released_when_the_request_is_cancelled_during_one() -> None:
    released: list[str] = []

    class Slow:
        def __init__(self, name: str, entered: asyncio.Event | None = None) -> None:
            self.name, self.entered = name, entered

        async def release(self, response: ChatResponse | None) -> None:
            if self.entered is not None:
                self.entered.set()
                await asyncio.Event().wait()  # cancelled here
            released.append(self.name)

    entered = asyncio.Event()
    tickets = [Slow("first", entered), Slow("second")]
    task = asyncio.ensure_future(dispatcher_module._release_tickets(tickets, None))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert released == ["second"]  # the first was cut short; the second still ran


# -- a group's only deployment, and how long a request waits for a cooldown ------

async def test_a_groups_only_deployment_is_not_cooled_by_a_404() -> None:
    h = make([dep("a")], num_retries=3)
    h.adapter.script("a", fail(NotFound, 404))
    start = h.clock.now()
    with pytest.raises(NotFound):  # the provider's own error, at once
        await h.dispatcher.complete(request(), "g")
    assert h.adapter.count("a") == 1
    result = await h.dispatcher.complete(request(), "g")
    assert result.response.content == "hello from a"
    assert h.clock.now() == start  # nobody waited
    assert h.dispatcher.health()[0].state == "healthy"


async def test_a_groups_only_deployment_is_not_cooled_by_transient_5xx() -> None:
    h = make([dep("a")], num_retries=1, allowed_fails=3)
    h.adapter.script("a", E500, E500, E500, E500)
    for _ in range(2):
        with pytest.raises(UpstreamServerError):
            await h.dispatcher.complete(request(), "g")
    before = h.clock.now()
    result = await h.dispatcher.complete(request(), "g")
    assert [a.outcome for a in result.attempts] == ["ok"]
    assert h.clock.now() == before
    # Still counted in its error rate, for the health page and latency-based routing.
    assert h.dispatcher.health()[0].failures == 4


async def test_a_groups_only_deployment_honours_a_short_retry_after_within_the_request(
        caplog) -> None:
    h = make([dep("a")], num_retries=2)
    h.adapter.script("a", fail(RateLimited, 429, retry_after=3))
    start = h.clock.now()
    with caplog.at_level(logging.INFO, logger="interlock.dispatch"):
        result = await h.dispatcher.complete(request(), "g")
    assert [a.outcome for a in result.attempts] == ["RateLimited", "skipped:cooldown", "ok"]
    assert h.clock.now() - start == pytest.approx(3, abs=0.01)
    assert any("waits 3.0s for a cooling deployment" in r.getMessage()
               for r in caplog.records)


async def test_a_long_retry_after_is_said_to_the_caller_not_slept_through() -> None:
    h = make([dep("a")], num_retries=2)
    h.adapter.script("a", fail(RateLimited, 429, retry_after=30))
    start = h.clock.now()
    with pytest.raises(RateLimited) as first:  # the provider's error, with its Retry-After
        await h.dispatcher.complete(request(), "g")
    assert first.value.retry_after == 30
    with pytest.raises(NoDeploymentAvailable) as second:
        await h.dispatcher.complete(request(), "g")
    assert second.value.retry_after == pytest.approx(30)
    assert h.clock.now() == start
    assert h.adapter.count("a") == 1


async def test_with_a_fallback_group_the_only_deployment_is_cooled() -> None:
    # Cooling it lets the fallback answer at once instead of after a failed call.
    h = make([dep("a", group="g"), dep("b", group="f")], fallbacks={"g": ["f"]})
    h.adapter.script("a", fail(AuthenticationFailed, 401))
    first = await h.dispatcher.complete(request(), "g")
    assert [a.outcome for a in first.attempts] == ["AuthenticationFailed", "ok"]
    second = await h.dispatcher.complete(request(), "g")
    assert [a.outcome for a in second.attempts] == ["skipped:cooldown", "ok"]
    assert h.adapter.count("a") == 1


async def test_no_request_waits_out_a_long_cooldown() -> None:
    # Both deployments cooled for auth_cooldown_time (300 s), with the default 600 s
    # timeout: the next request fails at once, saying when to come back.
    h = make([dep("a"), dep("b")])
    h.adapter.script("a", fail(AuthenticationFailed, 401))
    h.adapter.script("b", fail(NotFound, 404))
    with pytest.raises((AuthenticationFailed, NotFound)):
        await h.dispatcher.complete(request(), "g")
    start = h.clock.now()
    with pytest.raises(NoDeploymentAvailable) as info:
        await h.dispatcher.complete(request(), "g")
    assert h.clock.now() == start
    assert info.value.retry_after == pytest.approx(300)
    assert "Retry after 300.0s" in info.value.message


async def test_a_short_cooldown_is_waited_for_up_to_max_cooldown_wait() -> None:
    h = make([dep("a"), dep("b")], allowed_fails=0, num_retries=1, cooldown_time=4,
             max_cooldown_wait=3)
    h.adapter.script("a", E500)
    h.adapter.script("b", E500)
    with pytest.raises(UpstreamServerError):
        await h.dispatcher.complete(request(), "g")
    with pytest.raises(NoDeploymentAvailable):  # 4 s is more than the 3 s allowed
        await h.dispatcher.complete(request(), "g")
    h.clock.advance(1.5)  # 2.5 s left now: waited for
    start = h.clock.now()
    result = await h.dispatcher.complete(request(), "g")
    assert result.response.content.startswith("hello from")
    assert h.clock.now() - start == pytest.approx(2.5, abs=0.01)
