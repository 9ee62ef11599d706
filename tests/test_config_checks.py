"""Load-time checks of the settings that name other services (the Redis and the
ledger database URLs) and of budgets that would be counted wrongly: each one
refused with its path and the fix, never echoing a password."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from interlock.config import load_config
from interlock.costs.settings import LedgerSettings
from interlock.errors import ConfigError

PASSWORD = "hunter2-FAKE-pw"


def _config(**sections: Any) -> dict[str, Any]:
    return {"model_list": [{"model_name": "g",
                            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "k"}}],
            "ledger": {"database": None}, **sections}


def _error(source: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(source, environ={})
    text = str(info.value)
    assert PASSWORD not in text, text
    return text


# ----------------------------------------------------------------------- Redis


@pytest.mark.parametrize(("settings", "says"), [
    ({"redis_url": "http://127.0.0.1:6379/7"},
     "router_settings.redis_url: got a http:// URL; expected redis://, rediss:// or unix://"),
    ({"redis_url": f"redis://:{PASSWORD}@127.0.0.1:abc/7"},
     "router_settings.redis_url: the port is not a number from 1 to 65535"),
    ({"redis_url": "redis://127.0.0.1:70000/0"},
     "router_settings.redis_url: the port is not a number from 1 to 65535"),
    ({"redis_url": f"redis://:{PASSWORD}@127.0.0.1:6379/seven"},
     "router_settings.redis_url: the path after the host must be a database number"),
    ({"redis_url": "redis://127.0.0.1:6379/0?socket_timeout=soon"},
     "router_settings.redis_url: Invalid value for 'socket_timeout'"),
    ({"redis_url": "127.0.0.1:6379"},
     "router_settings.redis_url: got no scheme; expected redis://, rediss:// or unix://"),
    ({"redis_url": "unix://"},
     "router_settings.redis_url: a unix:// URL needs the socket's path"),
    # LiteLLM's separate settings are joined into a URL for the budgets: each
    # part must be what it says.
    ({"redis_host": "redis://127.0.0.1"},
     "router_settings.redis_host: got a URL; expected a host name alone"),
    ({"redis_host": "127.0.0.1:6380"},
     "router_settings.redis_host: got a host with a port; expected the host alone "
     "(the port goes in redis_port)"),
    ({"redis_host": f"user:{PASSWORD}@127.0.0.1"},
     "router_settings.redis_host: got a host with credentials"),
    ({"redis_host": "127.0.0.1", "redis_port": 0},
     "router_settings.redis_port: got 0; expected a number from 1 to 65535"),
])
def test_a_redis_setting_redis_cannot_use_is_refused_at_load(settings: dict[str, Any],
                                                             says: str) -> None:
    text = _error(_config(router_settings=settings))
    assert says in text, text
    assert "1 problem:" in text, text


@pytest.mark.parametrize("settings", [
    {"redis_url": "redis://127.0.0.1:6379/2"},
    {"redis_url": f"rediss://default:{PASSWORD}@cache.internal:6380"},
    {"redis_url": "redis://localhost"},
    {"redis_url": "unix:///run/redis.sock?db=3"},
    {"redis_host": "cache.internal", "redis_port": 6380, "redis_password": "p@ss:w/rd"},
    {"redis_host": "127.0.0.1"},
])
def test_redis_settings_redis_can_use_load(settings: dict[str, Any]) -> None:
    load_config(_config(router_settings=settings), environ={})


def test_a_redis_url_from_the_environment_is_checked_too() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(router_settings={"redis_url": "os.environ/MY_REDIS"}),
                    environ={"MY_REDIS": f"http://:{PASSWORD}@127.0.0.1:6379"})
    assert "router_settings.redis_url: got a http:// URL" in str(info.value)
    assert PASSWORD not in str(info.value)


# --------------------------------------------------------------------- the ledger


@pytest.mark.parametrize(("database", "says"), [
    (f"mysql://app:{PASSWORD}@127.0.0.1/spend",
     "the ledger cannot write to a mysql:// URL; expected a SQLite file path, "
     "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"),
    (f"postgres+psycopg://app:{PASSWORD}@127.0.0.1/spend",
     "the ledger cannot write to a postgres+psycopg:// URL; expected a SQLite file path, "
     "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB; did you mean 'postgresql+psycopg'?"),
    (f"postgres://app:{PASSWORD}@127.0.0.1/spend", "did you mean 'postgresql+psycopg'?"),
    # A '/' in the password is past what redaction recognises as one.
    (f"mysql://app:{PASSWORD}/x@127.0.0.1/spend", "got 'mysql://********@127.0.0.1/spend'"),
    # Async drivers: the ledger writes from a thread or a process, not an event loop.
    ("postgresql+asyncpg://127.0.0.1/spend", "cannot write to a postgresql+asyncpg:// URL"),
    ("sqlite+aiosqlite:///spend.sqlite", "cannot write to a sqlite+aiosqlite:// URL"),
    # SQLAlchemy takes the name after two slashes as a host; the file needs three.
    ("sqlite://spend.sqlite", "a SQLite URL names its file after three slashes "
                              "(sqlite:///spend.sqlite, or sqlite:////abs/path"),
    (f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:abc/spend",
     "not a URL the ledger can read"),
])
def test_a_ledger_database_the_ledger_cannot_use_is_refused_at_load(database: str,
                                                                    says: str) -> None:
    text = _error(_config(ledger={"database": database}))
    assert "ledger.database: " in text and says in text, text


@pytest.mark.parametrize("database", [
    "spend.sqlite", "sqlite:///spend.sqlite", "sqlite:////var/lib/spend.sqlite", "sqlite://",
    f"postgresql+psycopg://app:{PASSWORD}@db.internal:5432/spend",
    "sqlite+pysqlite:///spend.sqlite",
])
def test_ledger_databases_the_ledger_can_use_load(database: str) -> None:
    assert load_config(_config(ledger={"database": database}), environ={}).ledger.database \
        == database


def test_a_ledger_given_in_code_is_checked_without_showing_its_password() -> None:
    # Router(ledger=...) and Controller(ledger=...) build the settings directly.
    with pytest.raises(ValidationError) as info:
        LedgerSettings(database=f"mysql://app:{PASSWORD}@127.0.0.1/spend")
    assert "cannot write to a mysql:// URL" in str(info.value)
    assert PASSWORD not in str(info.value)


# ------------------------------------------------------------------------ budgets


def test_two_budgets_with_the_same_target_and_period_are_refused() -> None:
    budgets = [{"model_group": "g", "period": "day", "max_usd": 0.01},
               {"model_group": "g", "period": "month", "max_usd": 1},
               {"model_group": "g", "period": "day", "max_usd": 0.02},
               {"end_user": "*", "period": 12, "max_usd": 1},
               {"end_user": "*", "period": 12.0, "max_usd": 2}]
    text = _error(_config(budgets=budgets))
    assert "2 problems:" in text, text
    assert ("budgets[2]: the same target and period as budgets[0] (model_group 'g', "
            "$0.01 a day and $0.02 a day); expected one budget for each target and period: "
            "keep one of them") in text
    assert ("budgets[4]: the same target and period as budgets[3] (end_user '*', "
            "$1 every 12 hours and $2 every 12 hours)") in text


def test_budgets_of_one_target_over_different_periods_load() -> None:
    budgets = [{"model_group": "g", "period": p, "max_usd": 5} for p in ("day", "month", 24)]
    assert len(load_config(_config(budgets=budgets), environ={}).budgets) == 3


def test_a_router_s_bad_ledger_argument_is_a_config_error() -> None:
    # As a bad config file is: the library's own error type, the path, no password.
    from interlock import Router
    from interlock.errors import ConfigError

    model_list = [{"model_name": "a", "litellm_params": {"model": "openai/gpt-4o",
                                                         "api_key": "sk-x"}}]
    with pytest.raises(ConfigError) as info:
        Router(model_list=model_list, ledger=f"mysql://app:{PASSWORD}@127.0.0.1/spend")
    assert "ledger.database: " in str(info.value) and PASSWORD not in str(info.value)
    with pytest.raises(ConfigError, match=r"ledger\.batch_size: got 0"):
        Router(model_list=model_list, ledger={"database": "spend.sqlite", "batch_size": 0})


def test_a_ledger_database_from_the_environment_is_read_from_it() -> None:
    # LiteLLM's `os.environ/NAME` form: read literally it was a SQLite file named
    # "os.environ/DB" in the working directory, and the rows went there.
    url = f"postgresql+psycopg://app:{PASSWORD}@db.internal:5432/spend"
    loaded = load_config(_config(ledger={"database": "os.environ/DB"}), environ={"DB": url})
    assert loaded.ledger.database == url
    text = _error(_config(ledger={"database": "os.environ/DB"}))
    assert "ledger.database: the environment variable DB is not set" in text
