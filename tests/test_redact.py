"""`errors.redact`, which every error, log line and report passes a URL through."""

from __future__ import annotations

import pytest

from interlock.errors import redact


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://app:s3cr3t@db.internal:5432/spend",
    "redis://:s3cr3t@127.0.0.1:6379/0",
    # Written unescaped, a '/' or ':' in the password cut the match short before.
    "postgresql+psycopg://app:s3/cr3t@db.internal/spend",
    "redis://user:s3:cr/3t@127.0.0.1:6379/0",
    "redis://default:s3@cr3t@127.0.0.1:6379/8",
    # In the query, as redis-py and libpq take it.
    "redis://127.0.0.1:6379/8?password=s3cr3t",
    "postgresql://app@db.internal/spend?sslmode=require&password=s3cr3t",
])
def test_a_url_s_password_is_hidden(url: str) -> None:
    shown = redact(f"could not connect to {url}: refused")
    assert "s3" not in shown and "cr3t" not in shown, shown
    assert "[redacted]" in shown and shown.endswith(": refused")


def test_a_url_without_a_password_is_left_readable() -> None:
    text = "Connection to http://127.0.0.1:8900/openai/v1/chat/completions failed"
    assert redact(text) == text
