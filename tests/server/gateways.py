"""Gateways for tests: configs pointing at the fake upstream, served by uvicorn.

`serve(config)` builds the app with `create_app` around a `Gateway` the test
can inspect and serves it on 127.0.0.1 on a port the OS picked, in a
background thread. Configs are dicts whose deployments point at the fake
upstream with dummy literal keys. The `start_gateway` fixture (conftest.py)
stops every gateway it started.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from interlock.config import load_config
from interlock.gateway import Gateway
from interlock.server.app import create_app
from interlock.server.connection_limits import uvicorn_options
from interlock.testing import FakeUpstream

MASTER_KEY = "sk-interlock-test-master-key"

# Provider -> (model id the fake sees, the dummy key).
MODELS = {
    "anthropic": ("claude-sonnet-4-20250514", "sk-ant-test-dummy-key"),
    "gemini": ("gemini-2.5-pro", "test-gemini-dummy-key"),
    "openai": ("gpt-4o-mini", "sk-test-openai-dummy-key"),
}
# The group each provider serves in `three_provider_config`.
GROUPS = {"anthropic": "high-quality", "gemini": "cost-optimized", "openai": "budget"}


def deployment(fake: FakeUpstream, group: str, provider: str, model: str | None = None,
               **params: Any) -> dict[str, Any]:
    """One model_list entry pointing at the fake upstream."""
    model_id, key = MODELS[provider]
    return {"model_name": group, "litellm_params": {
        "model": f"{provider}/{model or model_id}", "api_key": key,
        "api_base": fake.base_url(provider), **params}}


def three_provider_config(fake: FakeUpstream, **router_settings: Any) -> dict[str, Any]:
    return {
        "model_list": [deployment(fake, group, provider) for provider, group in GROUPS.items()],
        "router_settings": {"num_retries": 0, "timeout": 10, **router_settings},
        "general_settings": {"master_key": MASTER_KEY},
        # No ledger file in the working directory; tests that want one give a tmp path.
        "ledger": {"database": None},
    }


@dataclass
class RunningGateway:
    server: uvicorn.Server
    thread: threading.Thread
    gateway: Gateway
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def openai(self, *, api_key: str = MASTER_KEY, **kwargs: Any) -> Any:
        from openai import AsyncOpenAI

        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 10)
        return AsyncOpenAI(base_url=self.base_url, api_key=api_key, **kwargs)


def serve(config: dict[str, Any], *, host: str = "127.0.0.1",
          environ: dict[str, str] | None = None, drain: float = 5.0,
          server_process: bool = False) -> RunningGateway:
    """`server_process`: the gateway as `interlock serve` builds it (its ledger
    written from a child process); the collector is left alone either way."""
    env = environ if environ is not None else {}
    loaded = load_config(config, environ=env)
    gateway = Gateway(loaded, environ=env, server=server_process)
    app = create_app(loaded, host=host, environ=env, gateway=gateway)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # With the connection limits `interlock serve` sets, from the config.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=drain,
                                           **uvicorn_options(loaded.general_settings)))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              name="interlock-test-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            sock.close()
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    running = RunningGateway(server, thread, gateway, int(sock.getsockname()[1]))
    return running


def ledger_rows(database: Path) -> dict[str, dict[str, Any]]:
    """Every row of a gateway's SQLite ledger, by request id."""
    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        return {r["request_id"]: dict(r) for r in db.execute("SELECT * FROM interlock_requests")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    """Until `interlock serve` in `proc` answers its readiness probe at `url`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"interlock serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health/readiness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"interlock serve at {url} did not become ready")
