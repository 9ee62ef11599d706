"""Load-time checks of the settings that name other services (the Redis and the
ledger database URLs) and of budgets that would be counted wrongly: each one
refused with its path and the fix, never echoing a password."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.config import load_config
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
