"""Two gateway processes (`interlock serve`) sharing the local Redis: a cooldown
opened through one is honoured by the other, and an rpm limit holds across both."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.server.gateways import (
    MASTER_KEY,
    deployment,
    free_port,
    three_provider_config,
    wait_ready,
)

from interlock.testing import FakeUpstream
from interlock.testing.script import Fault

pytestmark = pytest.mark.redis

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def serve_processes(tmp_path: Path, redis_url: str
                    ) -> Iterator[Callable[[dict[str, Any], int], list[str]]]:
    """Start `interlock serve` processes on one config with a fresh Redis prefix."""
    procs: list[subprocess.Popen[bytes]] = []
    prefix = f"interlock-test-{uuid.uuid4().hex[:12]}"

    def start(config: dict[str, Any], count: int) -> list[str]:
        config["router_settings"].update(redis_url=redis_url, redis_prefix=prefix)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        urls = []
        for _ in range(count):
            port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "interlock.cli.main", "serve", "--config", str(path),
                 "--host", "127.0.0.1", "--port", str(port), "--drain-timeout", "1"],
                cwd=tmp_path, env=dict(os.environ), stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs[-count:], strict=True):
            wait_ready(url, proc)
        return urls

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


async def _ask(http: httpx.AsyncClient, url: str, model: str) -> httpx.Response:
    return await http.post(url + "/v1/chat/completions", headers=AUTH,
                           json={"model": model, "messages": HELLO})


async def test_a_cooldown_opened_by_one_process_is_honoured_by_the_other(
        fake_upstream: FakeUpstream,
        serve_processes: Callable[[dict[str, Any], int], list[str]]) -> None:
    config = three_provider_config(fake_upstream, num_retries=1, cooldown_time=20)
    config["model_list"] = [deployment(fake_upstream, "primary", "anthropic", order=1),
                            deployment(fake_upstream, "primary", "gemini", order=2)]
    first, second = serve_processes(config, 2)
    fake_upstream.script(Fault(status=429, retry_after=20), provider="anthropic")
    async with httpx.AsyncClient(timeout=10) as http:
        a = await _ask(http, first, "primary")
        opened = time.monotonic()
        b = await _ask(http, second, "primary")
        b_delay = time.monotonic() - opened
        health = (await http.get(second + "/health/deployments", headers=AUTH)).json()
    assert a.status_code == 200 and a.headers["x-interlock-provider"] == "gemini"
    assert a.headers["x-interlock-attempt-log"].startswith("primary/anthropic/")
    # The second process never called Claude, although Claude would have answered now.
    assert b.status_code == 200, b.text
    assert b.headers["x-interlock-provider"] == "gemini"
    assert b.headers["x-interlock-attempts"] == "1"
    assert "anthropic/claude-sonnet-4-20250514=skipped:cooldown" in (
        b.headers["x-interlock-attempt-log"])
    assert b_delay < 1.0
    assert fake_upstream.calls("anthropic") == 1
    assert fake_upstream.calls("gemini") == 2
    claude = next(r for r in health["deployments"] if r["provider"] == "anthropic")
    assert claude["state"] == "cooling" and claude["cooldown_remaining_s"] > 15


async def test_an_rpm_limit_holds_across_both_processes(
        fake_upstream: FakeUpstream,
        serve_processes: Callable[[dict[str, Any], int], list[str]]) -> None:
    rpm = 6
    config = three_provider_config(fake_upstream, timeout=3)
    config["model_list"] = [deployment(fake_upstream, "limited", "openai", rpm=rpm)]
    urls = serve_processes(config, 2)
    async with httpx.AsyncClient(timeout=10) as http:
        answers = await asyncio.gather(*[_ask(http, urls[i % 2], "limited")
                                         for i in range(20)])
    accepted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert fake_upstream.calls("openai") <= rpm
    assert len(accepted) == fake_upstream.calls("openai")
    # Together the two processes admitted exactly up to the limit (each alone would
    # have admitted `rpm`).
    assert len(accepted) == rpm
    for r in refused:
        assert r.status_code in (429, 503)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert "rpm" in r.json()["error"]["message"]
