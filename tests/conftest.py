"""Shared fixtures: the fake upstream, and the local Redis and PostgreSQL.

Tests that need Redis or PostgreSQL skip with the reason on a machine without
them, and fail instead when CI is set, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from interlock.testing import FakeUpstream

REDIS_URL = os.environ.get("INTERLOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "INTERLOCK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}; start it (see .ci/run) to run this test"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def _fake_upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake_upstream(_fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """One fake upstream for the session, reset (script and records) for each test."""
    _fake_upstream_server.reset()
    yield _fake_upstream_server
    _fake_upstream_server.reset()


@pytest.fixture
def redis_url() -> str:
    _require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
def postgres_url() -> str:
    _require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def provider_env(fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch,
                 tmp_path: Path) -> Iterator[FakeUpstream]:
    """The environment a library user's program runs in: base URLs pointed at the
    fake upstream and a key for each provider, in a temporary working directory
    (where the default ledger file lands)."""
    for name, value in fake_upstream.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-library-key")
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-library-key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-library-key")
    monkeypatch.chdir(tmp_path)
    yield fake_upstream
