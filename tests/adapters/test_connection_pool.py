"""The upstream connection pool: a total bound, and a share per upstream host, so
that one host that hangs cannot leave the others without a connection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from interlock.adapters.http import (
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_HOST,
    HttpClient,
    Labels,
    Timeouts,
)
from interlock.config import load_config
from interlock.dispatch.settings import RouterSettings
from interlock.errors import ConfigError, Timeout
from interlock.gateway import Gateway
from interlock.testing import FakeUpstream, Fault

BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
HEADERS = {"content-type": "application/json"}


def _post(http: HttpClient, fake: FakeUpstream, total: float) -> Any:
    return http.post(fake.base_url("openai") + "/chat/completions", headers=HEADERS, body=BODY,
                     timeouts=Timeouts(connect=total, total=total), labels=Labels("openai", "d"))


async def test_a_hanging_host_leaves_the_other_hosts_their_connections(fake_upstream) -> None:
    # The security review's case, scaled down: calls to one hanging host, as many
    # as the whole pool, left a healthy host's call waiting for a connection until
    # it timed out. The hanging host gets its share and the healthy one is served.
    with FakeUpstream() as healthy:
        fake_upstream.script(Fault(hang=True, times=None), provider="openai")
        http = HttpClient(max_connections=4, max_per_host=2)
        try:
            hanging = [asyncio.ensure_future(_post(http, fake_upstream, 5.0))
                       for _ in range(6)]
            await asyncio.sleep(0.3)  # the hanging calls hold what they can get
            started = time.monotonic()
            answer = await _post(http, healthy, 2.0)
            assert answer.status == 200
            assert time.monotonic() - started < 1.0
            # The hanging host never had more than its share open.
            assert fake_upstream.calls("openai") == 2
            for task in hanging:
                task.cancel()
            await asyncio.gather(*hanging, return_exceptions=True)
        finally:
            await http.aclose()


async def test_calls_past_a_host_s_share_wait_within_their_own_timeout(fake_upstream) -> None:
    fake_upstream.script(Fault(hang=True, times=None), provider="openai")
    http = HttpClient(max_connections=4, max_per_host=1)
    try:
        first = asyncio.ensure_future(_post(http, fake_upstream, 5.0))
        await asyncio.sleep(0.2)
        with pytest.raises(Timeout):
            await _post(http, fake_upstream, 0.3)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    finally:
        await http.aclose()


def _config(**router_settings: Any) -> dict[str, Any]:
    return {"model_list": [{"model_name": "g", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "sk-test-not-real"}}],
        "router_settings": router_settings, "ledger": {"database": None}}


async def test_the_gateway_s_pool_takes_the_configured_share_of_the_total() -> None:
    # By default one host may use the whole pool (a default share would cap the
    # gateway's main provider); a configured share is the connector's.
    default = Gateway(load_config(_config(), environ={}), environ={})
    configured = Gateway(load_config(_config(max_upstream_connections=64,
                                             max_upstream_connections_per_host=16),
                                     environ={}), environ={})
    try:
        for gateway, (total, per_host) in ((default, (1000, 1000)), (configured, (64, 16))):
            connector = gateway.http._get_session().connector
            assert connector is not None
            assert (connector.limit, connector.limit_per_host) == (total, per_host)
    finally:
        await default.http.aclose()
        await configured.http.aclose()


def test_the_settings_defaults_are_the_pool_s_and_a_share_fits_in_the_total() -> None:
    settings = RouterSettings()
    assert (settings.max_upstream_connections, settings.max_upstream_connections_per_host) \
        == (MAX_CONNECTIONS, MAX_CONNECTIONS_PER_HOST)
    assert 1 <= MAX_CONNECTIONS_PER_HOST <= MAX_CONNECTIONS
    with pytest.raises(ConfigError, match="max_upstream_connections_per_host"):
        load_config(_config(max_upstream_connections=10,
                            max_upstream_connections_per_host=20), environ={})
    # aiohttp reads 0 as "no limit": a share of 0 would be no share at all.
    with pytest.raises(ValueError, match="max_per_host"):
        HttpClient(max_per_host=0)
