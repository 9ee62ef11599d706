"""The gateway's refusals: bad input, upstream errors and auth, all in OpenAI's
error format (`{"error": {"message", "type", "param", "code"}}`), never a 500."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from tests.server.gateways import MASTER_KEY, RunningGateway, three_provider_config

from interlock.config import load_config
from interlock.errors import ConfigError
from interlock.server.app import create_app
from interlock.testing import FakeUpstream
from interlock.testing.script import Fault

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


def _assert_openai_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in resp.text
    return dict(error)


async def _post(gw: RunningGateway, body: Any = None, *, content: bytes | None = None,
                headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(gw.base_url + "/chat/completions",
                               headers=AUTH if headers is None else headers,
                               json=body, content=content)


# -- bad input ------------------------------------------------------------------

async def test_unknown_model_is_404_listing_the_groups(gateway: RunningGateway,
                                                       fake_upstream: FakeUpstream) -> None:
    client = gateway.openai()
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-5-ultra", messages=HELLO)  # type: ignore[arg-type]
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "model"
    for group in ("high-quality", "cost-optimized", "budget"):
        assert group in error["message"]
    assert "gpt-5-ultra" in error["message"]
    assert fake_upstream.calls() == 0
    await client.close()


async def test_malformed_json_is_400(gateway: RunningGateway) -> None:
    resp = await _post(gateway, content=b'{"model": "budget", "messages": [')
    error = _assert_openai_error(resp, 400)
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


async def test_a_body_that_is_not_utf8_is_400_saying_where(gateway: RunningGateway) -> None:
    body = b'{"model": "budget", "messages": [{"role": "user", "content": "a\xff\xfe"}]}'
    error = _assert_openai_error(await _post(gateway, content=body), 400)
    offset = body.index(b"\xff")
    assert error["message"].startswith(
        f"The request body is not valid UTF-8: byte 0xff at offset {offset}")
    assert "surrogates" not in error["message"]


async def test_a_model_that_is_not_a_string_is_400_saying_so(
        gateway: RunningGateway) -> None:
    error = _assert_openai_error(await _post(gateway, {"model": 5, "messages": HELLO}), 400)
    assert "'model' must be a string" in error["message"] and "int 5" in error["message"]
    assert "required" not in error["message"]


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": HELLO}, "model"),
    ({"model": "budget"}, "messages"),
    ({"model": "budget", "messages": []}, "messages"),
    ({"model": "budget", "messages": HELLO, "temperature": "hot"}, "temperature"),
    ({"model": "budget", "messages": HELLO, "temperature": 7}, "temperature"),
    ({"model": "budget", "messages": HELLO, "max_tokens": "many"}, "max_tokens"),
    ({"model": "budget", "messages": HELLO, "stream": "yes"}, "stream"),
    ({"model": 42, "messages": HELLO}, "model"),
])
async def test_missing_or_mistyped_field_is_400_naming_it(
        gateway: RunningGateway, fake_upstream: FakeUpstream, body: dict[str, Any],
        param: str) -> None:
    error = _assert_openai_error(await _post(gateway, body), 400)
    assert error["param"] == param
    assert param in error["message"]
    assert fake_upstream.calls() == 0


@pytest.mark.parametrize("body", [
    [], "a string", 17, None,
    {"model": "budget", "messages": "hello"},
    {"model": "budget", "messages": [{"role": "robot", "content": "hi"}]},
    {"model": "budget", "messages": [{"role": "user", "content": 5}]},
    {"model": "budget", "messages": [{"role": "user"}]},
    {"model": "budget", "messages": ["hi"]},
    {"model": "budget", "messages": [{"role": "tool", "content": "x"}]},
    {"model": "budget", "messages": HELLO, "tools": "get_weather"},
    {"model": "budget", "messages": HELLO, "tools": [{"type": "function"}]},
    {"model": "budget", "messages": HELLO, "tool_choice": 3},
    {"model": "budget", "messages": HELLO, "response_format": {"type": "yaml"}},
    {"model": "budget", "messages": HELLO, "stop": 5},
    {"model": "budget", "messages": HELLO, "metadata": "x"},
    {"model": "budget", "messages": HELLO, "fallbacks": "cost-optimized"},
    {"model": "budget", "messages": HELLO, "context_window_fallbacks": "cost-optimized"},
    {"model": "budget", "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
    {"model": "budget", "messages": HELLO, "stream": True, "stream_options": "yes"},
    {"model": "budget", "messages": HELLO, "stream": True, "stream_options": [True]},
    {"model": "budget", "messages": HELLO, "user": {"id": 5}},
])
async def test_odd_bodies_get_a_4xx_never_a_500(gateway: RunningGateway,
                                                body: Any) -> None:
    import json

    resp = await _post(gateway, content=json.dumps(body).encode())
    assert 400 <= resp.status_code < 500, resp.text
    _assert_openai_error(resp, resp.status_code)


async def test_body_over_the_limit_is_413(fake_upstream: FakeUpstream,
                                          start_gateway: Callable[..., RunningGateway]) -> None:
    config = three_provider_config(fake_upstream)
    config["general_settings"]["max_request_body_bytes"] = 2_000
    gw = start_gateway(config)
    client = gw.openai()
    # Under the limit: fine.
    ok = await client.chat.completions.create(
        model="budget", messages=[{"role": "user", "content": "x" * 1_000}])
    assert ok.choices[0].message.content
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model="budget", messages=[{"role": "user", "content": "x" * 5_000}])
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict)
    assert "2000" in caught.value.body["message"]
    assert fake_upstream.calls() == 1
    await client.close()


async def test_a_declared_length_over_the_limit_is_413_before_the_body(
        gateway: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    # Headers declaring 20 MB, and none of the body: the answer must not wait for it.
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                 b"authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
                 b"content-type: application/json\r\ncontent-length: 20000000\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    assert status.startswith(b"HTTP/1.1 413")


async def test_wrong_method_is_405(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(gateway.base_url + "/chat/completions", headers=AUTH)
    _assert_openai_error(resp, 405)


async def test_an_endpoint_not_served_is_a_404_that_lists_what_is(
        gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(gateway.base_url + "/completions", headers=AUTH,
                               json={"model": "budget", "prompt": "hi"})
    error = _assert_openai_error(resp, 404)
    assert "No route for POST /v1/completions" in error["message"]
    assert "POST /v1/chat/completions, POST /v1/embeddings" in error["message"]


async def test_a_model_name_with_control_characters_gets_its_404_not_a_dropped_connection(
        gateway: RunningGateway) -> None:
    """The route header echoes the name asked for; a control character in a header
    made the server close the connection without an answer."""
    name = "gpt\x00\n-4" + "o" * 3000
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(gateway.base_url + "/chat/completions", headers=AUTH,
                               json={"model": name, "messages": HELLO})
    _assert_openai_error(resp, 404)
    route = resp.headers["x-interlock-route"]
    assert "gpt??-4o" in route and route.endswith("...") and len(route) <= 1000


# -- upstream errors ---------------------------------------------------------------

@pytest.mark.parametrize(("provider", "group"), [("anthropic", "high-quality"),
                                                 ("gemini", "cost-optimized"),
                                                 ("openai", "budget")])
async def test_upstream_429_reaches_the_sdk_as_rate_limit_error(
        provider: str, group: str, fake_upstream: FakeUpstream,
        gateway: RunningGateway) -> None:
    fake_upstream.script(Fault(status=429, retry_after=7), provider=provider)
    client = gateway.openai()
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=group, messages=HELLO)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "rate_limit_error"
    assert caught.value.code == "rate_limit_exceeded"  # OpenAI's code, as ported code checks
    assert caught.value.response.headers["x-interlock-provider"] == provider
    assert caught.value.response.headers["x-interlock-attempts"] == "1"
    assert 7 <= int(caught.value.response.headers["retry-after"]) <= 8
    assert fake_upstream.calls(provider) == 1
    await client.close()


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
async def test_a_prompt_too_long_upstream_carries_openais_code(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # Client code trims a conversation on err.code == "context_length_exceeded".
    from tests.server.gateways import GROUPS

    fake_upstream.script(Fault(status=400, kind="context_window"), provider=provider)
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway.openai().chat.completions.create(model=GROUPS[provider],
                                                       messages=HELLO)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
async def test_upstream_403_and_422_keep_their_statuses_through_the_gateway(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    # As an upstream 401 reaches the client as a 401, a 403 is a 403 (the OpenAI
    # SDK's PermissionDeniedError), not a 401 that blames the client's own key.
    from tests.server.gateways import GROUPS

    client = gateway.openai()
    fake_upstream.script(Fault(status=422), provider=provider)
    with pytest.raises(openai.UnprocessableEntityError) as unprocessable:
        await client.chat.completions.create(model=GROUPS[provider], messages=HELLO)
    assert unprocessable.value.status_code == 422
    fake_upstream.script(Fault(status=403), provider=provider)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await client.chat.completions.create(model=GROUPS[provider], messages=HELLO)
    body = denied.value.body
    assert isinstance(body, dict)
    assert body["type"] == "permission_error" and body["code"] == "PermissionDenied"
    # The message says whose key was refused: the deployment's, not the client's.
    assert f"{provider} answered HTTP 403 for deployment '{GROUPS[provider]}/" in body["message"]
    assert denied.value.response.headers["x-interlock-provider"] == provider
    await client.close()


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
async def test_upstream_500_is_an_openai_error_not_a_traceback(
        provider: str, fake_upstream: FakeUpstream, gateway: RunningGateway) -> None:
    from tests.server.gateways import GROUPS

    fake_upstream.script(Fault(status=500), provider=provider)
    client = gateway.openai()
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model=GROUPS[provider], messages=HELLO)
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "upstream_error"
    assert body["code"] == "UpstreamServerError"
    assert "Traceback" not in caught.value.response.text
    # No key leaks into what the client sees.
    assert "dummy-key" not in caught.value.response.text
    await client.close()


# -- auth ------------------------------------------------------------------------

async def test_no_key_and_wrong_key_are_401(gateway: RunningGateway,
                                            fake_upstream: FakeUpstream) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": MASTER_KEY},
                    {"authorization": f"Basic {MASTER_KEY}"}):
        error = _assert_openai_error(
            await _post(gateway, {"model": "budget", "messages": HELLO}, headers=headers), 401)
        assert error["type"] == "authentication_error"
    bad = gateway.openai(api_key=MASTER_KEY + "x")
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="budget", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()
    await bad.close()
    assert fake_upstream.calls() == 0
    good = gateway.openai()
    assert (await good.chat.completions.create(model="budget", messages=HELLO)).choices
    await good.close()


async def test_health_probes_are_open(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        live = await http.get(gateway.url + "/health/liveness")
        ready = await http.get(gateway.url + "/health/readiness")
        models = await http.get(gateway.base_url + "/models")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    # Everything else needs the key.
    assert models.status_code == 401


async def test_master_key_from_the_environment(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    config = three_provider_config(fake_upstream)
    del config["general_settings"]["master_key"]
    gw = start_gateway(config, environ={"INTERLOCK_MASTER_KEY": "sk-from-env-123"})
    assert (await _post(gw, {"model": "budget", "messages": HELLO})).status_code == 401
    ok = await _post(gw, {"model": "budget", "messages": HELLO},
                     headers={"authorization": "Bearer sk-from-env-123"})
    assert ok.status_code == 200


async def test_allow_unauthenticated_works_on_loopback_only(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    config = three_provider_config(fake_upstream)
    config["general_settings"] = {"allow_unauthenticated": True}
    for host in ("0.0.0.0", "192.168.1.20", "example.com", "::"):
        with pytest.raises(ConfigError, match="loopback"):
            create_app(load_config(config, environ={}), host=host, environ={})
    gw = start_gateway(config)
    resp = await _post(gw, {"model": "budget", "messages": HELLO}, headers={})
    assert resp.status_code == 200


def test_no_key_and_no_setting_refuses_to_start(fake_upstream: FakeUpstream) -> None:
    config = three_provider_config(fake_upstream)
    config["general_settings"] = {}
    with pytest.raises(ConfigError, match="INTERLOCK_MASTER_KEY"):
        create_app(load_config(config, environ={}), environ={})


def test_serve_refuses_to_start_without_a_key(fake_upstream: FakeUpstream,
                                              tmp_path: Path) -> None:
    config = three_provider_config(fake_upstream)
    config["general_settings"] = {}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "INTERLOCK_MASTER_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "interlock.cli.main", "serve", "--config", str(path),
         "--port", "1"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "No master key" in done.stderr
    assert "INTERLOCK_MASTER_KEY" in done.stderr
    assert "Traceback" not in done.stderr


async def test_client_keys_reach_the_api_by_name_but_not_the_admin_pages(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "ledger.sqlite"
    config = three_provider_config(fake_upstream)
    config["general_settings"]["api_keys"] = [
        {"name": "team-search", "key": "sk-team-search-0123456789"},
        {"name": "team-chat", "key": "os.environ/TEAM_CHAT_KEY"}]
    config["ledger"] = {"database": str(database)}
    gw = start_gateway(config, environ={"TEAM_CHAT_KEY": "sk-team-chat-9876543210"})
    for key in ("sk-team-search-0123456789", "sk-team-chat-9876543210", MASTER_KEY):
        client = gw.openai(api_key=key)
        assert (await client.chat.completions.create(model="budget", messages=HELLO)).choices
        await client.close()
    for headers in ({"authorization": "Bearer sk-team-search-012345678"},  # one short
                    {"authorization": "Bearer sk-team-chat-9876543210x"}):
        assert (await _post(gw, {"model": "budget", "messages": HELLO},
                            headers=headers)).status_code == 401
    async with httpx.AsyncClient(timeout=10) as http:
        team = {"authorization": "Bearer sk-team-chat-9876543210"}
        for page in ("/metrics", "/health/deployments", "/health/ledger"):
            refused = await http.get(gw.url + page, headers=team)
            assert refused.status_code == 403, page
            assert refused.json()["error"]["code"] == "master_key_required"
            admin = await http.get(gw.url + page,
                                   headers={"authorization": f"Bearer {MASTER_KEY}"})
            assert admin.status_code == 200, page
        assert (await http.get(gw.base_url + "/models", headers=team)).status_code == 200
    gw.stop()  # shutdown flushes the ledger
    with sqlite3.connect(database) as db:
        keys = [r[0] for r in db.execute("SELECT api_key_id FROM interlock_requests "
                                         "ORDER BY id")]
    # Each request is recorded under its key's name; the master key by a digest.
    assert keys[:2] == ["team-search", "team-chat"]
    assert keys[2].startswith("key-") and MASTER_KEY not in keys[2]


def test_client_keys_are_checked_when_the_app_is_made(fake_upstream: FakeUpstream) -> None:
    config = three_provider_config(fake_upstream)
    same = {"key": "sk-the-same-key-0123456789"}
    config["general_settings"]["api_keys"] = [{"name": "a", **same}, {"name": "b", **same}]
    with pytest.raises(ConfigError, match="'a' and 'b' are the same key"):
        create_app(load_config(config, environ={}), environ={})
    config["general_settings"]["api_keys"] = [{"name": "a", "key": MASTER_KEY}]
    with pytest.raises(ConfigError, match="empty or the master key"):
        create_app(load_config(config, environ={}), environ={})
    config["general_settings"]["api_keys"] = [{"name": "a", "key": "k1-0123456789"},
                                              {"name": "a", "key": "k2-0123456789"}]
    with pytest.raises(ConfigError, match="the name 'a' is given twice"):
        load_config(config, environ={})
    # A key from an unset variable is off, and said so; without a master key the
    # client keys alone do not start a gateway.
    config["general_settings"] = {"api_keys": [{"name": "a", "key": "os.environ/NOPE_KEY"},
                                               {"name": "b", "key": "k2-0123456789"}]}
    loaded = load_config(config, environ={})
    assert any("api_keys[0] (a): the environment variable NOPE_KEY is not set"
               in w for w in loaded.warnings)
    assert [k.name for k in loaded.general_settings.api_keys] == ["b"]
    with pytest.raises(ConfigError, match="api_keys are set but there is no master key"):
        create_app(loaded, environ={})


def test_a_named_master_key_variable_that_is_unset_is_not_replaced(
        fake_upstream: FakeUpstream) -> None:
    # The operator chose NO_SUCH_MASTER: a gateway quietly guarded by
    # INTERLOCK_MASTER_KEY instead would be running on a key they did not pick.
    config = three_provider_config(fake_upstream)
    config["general_settings"] = {"master_key": "os.environ/NO_SUCH_MASTER"}
    environ = {"INTERLOCK_MASTER_KEY": "sk-some-other-key-0123456789"}
    loaded = load_config(config, environ=environ)
    (warning,) = [w for w in loaded.warnings if "master_key" in w]
    assert "NO_SUCH_MASTER is not set" in warning
    assert "INTERLOCK_MASTER_KEY is not used in its place" in warning
    with pytest.raises(ConfigError, match="NO_SUCH_MASTER, which is not set: export it"):
        create_app(loaded, environ=environ)
    # Without a master_key in the config, INTERLOCK_MASTER_KEY is the key, as before.
    config["general_settings"] = {}
    assert create_app(load_config(config, environ=environ), environ=environ) is not None


async def test_a_client_key_asks_only_for_its_models(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    config = three_provider_config(fake_upstream)
    config["general_settings"]["api_keys"] = [
        {"name": "interns", "key": "sk-interns-0123456789", "models": ["budget"]}]
    gw = start_gateway(config)
    interns = gw.openai(api_key="sk-interns-0123456789")
    assert (await interns.chat.completions.create(model="budget", messages=HELLO)).choices
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await interns.chat.completions.create(model="high-quality", messages=HELLO)
    assert refused.value.status_code == 403
    assert refused.value.body["code"] == "model_not_allowed"
    assert "may ask for: budget" in refused.value.body["message"]
    # It sees only what it may ask for; the master key sees everything.
    assert [m.id for m in (await interns.models.list()).data] == ["budget"]
    with pytest.raises(openai.NotFoundError):
        await interns.models.retrieve("high-quality")
    await interns.close()
    everyone = gw.openai()
    assert len((await everyone.models.list()).data) == 3
    await everyone.close()
    async with httpx.AsyncClient(timeout=10) as http:
        embedding = await http.post(
            gw.base_url + "/embeddings", json={"model": "high-quality", "input": "x"},
            headers={"authorization": "Bearer sk-interns-0123456789"})
    assert embedding.status_code == 403
    assert fake_upstream.calls("anthropic") == 0


def test_a_client_key_s_models_must_exist(fake_upstream: FakeUpstream) -> None:
    config = three_provider_config(fake_upstream)
    config["general_settings"]["api_keys"] = [
        {"name": "a", "key": "sk-a-0123456789", "models": ["budget", "bugdet"]}]
    with pytest.raises(ConfigError, match=r"api_keys\[0\]\.models: 'bugdet' is not a name"):
        create_app(load_config(config, environ={}), environ={})


@pytest.mark.parametrize("name", ["key-1139bd183f6b", "(none)", "ops\nteam", " ops"])
def test_a_config_key_may_not_take_a_name_interlock_uses_itself(
        fake_upstream: FakeUpstream, name: str) -> None:
    # As for keys made at run time: the master key's ledger id, a report's label,
    # or a name that splits a log line would merge two keys' spend and budgets.
    config = three_provider_config(fake_upstream)
    config["general_settings"]["api_keys"] = [{"name": name, "key": "sk-a-0123456789"}]
    with pytest.raises(ConfigError, match=r"api_keys\[0\]\.name: .*cannot name a client key"):
        load_config(config, environ={})


def test_a_config_key_with_no_models_listed_may_ask_for_all(
        fake_upstream: FakeUpstream) -> None:
    # LiteLLM's proxy reads an empty list as every model, and so does /key/generate.
    config = three_provider_config(fake_upstream)
    config["general_settings"]["api_keys"] = [
        {"name": "a", "key": "sk-a-0123456789", "models": []}]
    loaded = load_config(config, environ={})
    (key,) = loaded.general_settings.api_keys
    assert key.models is None
    # It meant "nothing" before: the widening is said at load.
    assert any("api_keys[0].models: [] lets the key ask for every model" in w
               for w in loaded.warnings)


@pytest.mark.parametrize("every", ["*", "all-proxy-models"])
async def test_a_config_key_given_litellm_s_every_model_may_ask_for_all(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        every: str) -> None:
    config = three_provider_config(fake_upstream)
    config["general_settings"]["api_keys"] = [
        {"name": "a", "key": "sk-a-0123456789", "models": [every]}]
    loaded = load_config(config, environ={})
    assert loaded.general_settings.api_keys[0].models is None
    # Asked for explicitly, so no warning (unlike [], which once meant nothing).
    assert not any("api_keys[0].models" in w for w in loaded.warnings)
    gw = start_gateway(config)
    client = gw.openai(api_key="sk-a-0123456789")
    for model in ("budget", "high-quality"):
        assert (await client.chat.completions.create(model=model, messages=HELLO)).choices
    await client.close()


async def test_a_client_key_s_own_limits_give_a_429_with_retry_after(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    from tests.server.gateways import ledger_rows

    database = tmp_path / "ledger.sqlite"
    config = three_provider_config(fake_upstream)
    config["general_settings"]["api_keys"] = [
        {"name": "batch", "key": "sk-batch-0123456789", "rpm_limit": 1},
        {"name": "chat", "key": "sk-chat-0123456789", "max_parallel_requests": 1}]
    config["ledger"] = {"database": str(database)}
    gw = start_gateway(config)
    batch = gw.openai(api_key="sk-batch-0123456789")
    assert (await batch.chat.completions.create(model="budget", messages=HELLO)).choices
    with pytest.raises(openai.RateLimitError) as refused:
        await batch.chat.completions.create(model="budget", messages=HELLO, stream=True)
    assert refused.value.body["code"] == "rate_limit_exceeded"
    assert "'batch' is over its rpm_limit of 1" in refused.value.body["message"]
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    await batch.close()
    # Another key, and the master key, have limits of their own (none here).
    for api_key in ("sk-chat-0123456789", MASTER_KEY):
        client = gw.openai(api_key=api_key)
        assert (await client.chat.completions.create(model="budget", messages=HELLO)).choices
        await client.close()
    # One call at a time: a second while the first waits on the upstream is refused.
    fake_upstream.script(Fault(latency=0.5), provider="openai")
    chat = gw.openai(api_key="sk-chat-0123456789")
    slow = asyncio.ensure_future(chat.chat.completions.create(model="budget", messages=HELLO))
    for _ in range(500):  # until the fake holds the slow call (5 s at most)
        if fake_upstream.calls("openai") == 4:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(openai.RateLimitError) as busy:
        await chat.embeddings.create(model="budget", input="x")
    assert "max_parallel_requests of 1" in busy.value.body["message"]
    assert busy.value.response.headers["retry-after"] == "1"  # a hint the SDK honours
    assert (await slow).choices
    await chat.close()
    assert fake_upstream.calls("openai") == 4  # nothing refused went upstream
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(gw.url + "/metrics", headers=AUTH)).text
    assert 'interlock_client_key_refusals_total{key="batch",limit="rpm_limit"} 1\n' in metrics
    assert ('interlock_client_key_refusals_total{key="chat",limit="max_parallel_requests"} 1\n'
            in metrics)
    assert 'interlock_client_key_in_flight{key="chat"} 0\n' in metrics
    gw.stop()
    refusals = [r for r in ledger_rows(database).values() if r["error_class"] == "KeyRateLimited"]
    assert sorted(r["api_key_id"] for r in refusals) == ["batch", "chat"]


async def test_a_client_key_may_name_a_router_at_every_threshold(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    config = three_provider_config(fake_upstream)
    config["routing"] = {"strong_group": "high-quality", "weak_group": "budget"}
    config["general_settings"]["api_keys"] = [
        {"name": "controller", "key": "sk-controller-0123456789", "models": ["router-random-*"]}]
    gw = start_gateway(config)
    client = gw.openai(api_key="sk-controller-0123456789")
    for threshold in ("0", "1", "0.116"):  # RouteLLM's model names, any threshold
        answer = await client.chat.completions.create(model=f"router-random-{threshold}",
                                                      messages=HELLO)
        assert answer.choices
    for other in ("budget", "router-mf-0.5", "router-random"):
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model=other, messages=HELLO)
    await client.close()
    # Only routers a router- name can reach may be named so.
    config["general_settings"]["api_keys"][0]["models"] = ["router-mf-*"]
    with pytest.raises(ConfigError, match=r"'router-mf-\*' is not a name clients can ask for; "
                                          r"expected some of: .*router-random-\*"):
        create_app(load_config(config, environ={}), environ={})
