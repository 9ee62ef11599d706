"""What an upstream's Retry-After can do is capped at `max_upstream_retry_after`
(300 s unless set): the cooldown it opens, and the Retry-After the caller is
given. `Retry-After: 99999999999` cooled a deployment for a day (the state's
own backstop) and reached the client unchanged."""

from __future__ import annotations

import math

import pytest
from tests.dispatch.fakes import dep, fail, make, request

from interlock.dispatch.settings import RouterSettings
from interlock.errors import NoDeploymentAvailable, Overloaded, RateLimited

HUGE = 99999999999.0


def _cooling(h, name: str) -> float:  # type: ignore[no-untyped-def]
    row = next(r for r in h.dispatcher.health() if r.deployment == name)
    assert row.state == "cooling"
    return float(row.cooldown_remaining_s)


async def test_a_huge_retry_after_cools_for_the_cap_and_is_passed_on_capped() -> None:
    assert RouterSettings().max_upstream_retry_after == 300
    h = make([dep("a")], num_retries=0)
    h.adapter.script("a", fail(RateLimited, 429, retry_after=HUGE))
    with pytest.raises(RateLimited) as first:
        await h.dispatcher.complete(request(), "g")
    assert first.value.retry_after == 300
    assert _cooling(h, "a") == pytest.approx(300)
    with pytest.raises(NoDeploymentAvailable) as second:
        await h.dispatcher.complete(request(), "g")
    assert second.value.retry_after == pytest.approx(300)


async def test_the_cap_is_a_setting_and_counts_for_every_deployment_in_a_group() -> None:
    h = make([dep("a"), dep("b")], num_retries=0, max_upstream_retry_after=30)
    h.adapter.default = fail(Overloaded, 503, retry_after=HUGE)
    for _ in range(2):
        with pytest.raises(Overloaded) as info:
            await h.dispatcher.complete(request(), "g")
        assert info.value.retry_after == 30
    assert _cooling(h, "a") == pytest.approx(30) and _cooling(h, "b") == pytest.approx(30)


async def test_a_retry_after_within_the_cap_is_honoured_as_sent() -> None:
    h = make([dep("a")], num_retries=0)
    h.adapter.script("a", fail(RateLimited, 429, retry_after=45))
    with pytest.raises(RateLimited) as info:
        await h.dispatcher.complete(request(), "g")
    assert info.value.retry_after == 45
    assert _cooling(h, "a") == pytest.approx(45)


@pytest.mark.parametrize(("sent", "kept"), [(math.inf, 300.0), (math.nan, None),
                                            (-5.0, None)])
async def test_a_retry_after_that_is_no_number_of_seconds_is_capped_or_dropped(
        sent: float, kept: float | None) -> None:
    h = make([dep("a"), dep("b")], num_retries=0)
    h.adapter.script("a", fail(RateLimited, 429, retry_after=sent))
    h.adapter.script("b", fail(RateLimited, 429, retry_after=sent))
    with pytest.raises(RateLimited) as info:
        await h.dispatcher.complete(request(), "g")
    assert info.value.retry_after == kept
