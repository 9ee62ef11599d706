"""Fixtures for the gateway tests: gateways that are stopped when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.server.gateways import RunningGateway, serve, three_provider_config

from interlock.testing import FakeUpstream


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways from config dicts; every one is stopped when the test ends."""
    started: list[RunningGateway] = []

    def start(config: dict[str, Any], **kwargs: Any) -> RunningGateway:
        running = serve(config, **kwargs)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
        assert not running.thread.is_alive(), "a test gateway did not stop"


@pytest.fixture
def gateway(fake_upstream: FakeUpstream,
            start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    """The three-provider gateway with a master key."""
    return start_gateway(three_provider_config(fake_upstream))
