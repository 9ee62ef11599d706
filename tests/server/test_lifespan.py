"""The server's lifespan: the gateway starts before the server says it is up,
and `interlock serve` (tune_gc) tunes the collector only after that."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from interlock.config import load_config
from interlock.gateway import Gateway
from interlock.server import app as app_module
from interlock.server.app import InterlockApp

CONFIG = {
    "model_list": [{"model_name": "budget", "litellm_params": {
        "model": "openai/small", "api_base": "http://127.0.0.1:9/v1", "api_key": "sk-test"}}],
    "ledger": {"database": None},
}


async def _run_lifespan(app: InterlockApp) -> list[str]:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    return sent


@pytest.mark.parametrize("tune", [True, False])
async def test_tune_gc_tunes_the_collector_once_the_gateway_has_started(
        monkeypatch: pytest.MonkeyPatch, tune: bool) -> None:
    events: list[str] = []
    gateway = Gateway(load_config(CONFIG, environ={}), environ={})
    real_start = gateway.start

    async def start() -> None:
        await real_start()
        events.append("gateway started")

    monkeypatch.setattr(gateway, "start", start)
    monkeypatch.setattr(app_module, "tune_collector", lambda: events.append("gc tuned"))
    sent = await _run_lifespan(InterlockApp(gateway, tune_gc=tune))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    expected = ["gateway started", "gc tuned"] if tune else ["gateway started"]
    assert events == expected


def test_tune_collector_freezes_and_raises_the_young_threshold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "get_threshold", lambda: (700, 10, 10))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(t))
    app_module.tune_collector()
    assert calls == ["freeze", (app_module.GEN0_THRESHOLD, 10, 10)]
