"""Key names that are keys: refused on `/key/*` (a name is logged, listed and
kept in the ledger), never echoed; keys named so before the rule still work.
And what a request written for LiteLLM's proxy is told when it names no key."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openai
import pytest
from tests.server.gateways import MASTER_KEY, RunningGateway
from tests.server.test_key_admin import _call, _chat, _config

from interlock.testing import FakeUpstream

# A config key whose value does not look like a key: only its digest tells.
PLAIN_KEY = "plain-config-secret-4815162342"


def _gateway(fake: FakeUpstream, start: Callable[..., RunningGateway],
             tmp_path: Path) -> RunningGateway:
    config = _config(fake, tmp_path / "ledger.sqlite")
    config["general_settings"]["api_keys"].append({"name": "plain", "key": PLAIN_KEY})
    return start(config)


async def test_a_name_holding_a_live_run_time_key_is_refused_and_never_repeated(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    # The judge took the gateway's key store when the app was built, before the
    # store was attached: run-time keys among words went through, and came back.
    gw = _gateway(fake_upstream, start_gateway, tmp_path)
    live = (await _call(gw, "POST", "/key/generate", {"name": "team"})).json()["key"]
    for name in (f"our {live} key", f"x\n{live}", f"{live}\n"):
        made = await _call(gw, "POST", "/key/generate", {"name": name})
        assert made.status_code == 400 and live not in made.text, made.text
        update = await _call(gw, "POST", "/key/update", {"name": name, "rpm_limit": 3})
        assert update.status_code in (400, 404) and live not in update.text
    listed = (await _call(gw, "GET", "/key/list")).json()["keys"]
    assert [k["name"] for k in listed] == ["team"]


async def test_a_name_that_is_or_looks_like_a_key_is_refused_and_never_repeated(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gw = _gateway(fake_upstream, start_gateway, tmp_path)
    live = (await _call(gw, "POST", "/key/generate", {"name": "team"})).json()["key"]
    secrets = [live, "sk-master-SECRET", MASTER_KEY, PLAIN_KEY, "SK-other-provider-key"]
    # A key pasted with a line break or a space at either end, or among words: the
    # rules that refuse such a name otherwise repeat it, and must not for these.
    pasted = [f(s) for s in (PLAIN_KEY, MASTER_KEY) for f in (
        lambda s: s + "\n", lambda s: " " + s, lambda s: s + " ", lambda s: "team " + s)]
    with caplog.at_level("INFO", logger="interlock"):
        for secret in secrets + pasted:
            key = secret.split()[-1]
            for field in ("name", "key_alias"):
                answer = await _call(gw, "POST", "/key/generate", {field: secret})
                assert answer.status_code == 400, (secret, answer.text)
                error = answer.json()["error"]
                assert (error["param"], error["code"]) == ("name", "invalid_value")
                assert "send a name to" in error["message"]
                assert key not in answer.text
            # Nor is a key taken as a name in a URL, or echoed by update and delete.
            info = await _call(gw, "GET", f"/key/info?name={quote(secret)}")
            assert info.status_code == 400 and "not taken in a URL" in info.text
            assert key not in info.text
            update = await _call(gw, "POST", "/key/update", {"name": secret, "rpm_limit": 3})
            assert update.status_code in (400, 404) and key not in update.text
            alone = await _call(gw, "POST", "/key/delete", {"names": [secret]})
            assert alone.status_code == 404 and key not in alone.text
            assert "(a name that looks like a key, not shown)" in alone.text
            delete = await _call(gw, "POST", "/key/delete", {"names": [secret, "team"]})
            assert delete.json()["not_found"] == ["(a name that looks like a key, not shown)"]
            assert key not in delete.text
            await _call(gw, "POST", "/key/generate", {"name": "team"})  # for the next turn
        listed = (await _call(gw, "GET", "/key/list")).json()["keys"]
    assert [k["name"] for k in listed] == ["team"]
    for secret in secrets[:3]:  # the config's own keys may be in start-up lines
        assert secret not in caplog.text
    # A name like a key's, in part, is a name like any other.
    assert (await _call(gw, "POST", "/key/generate", {"name": "team-sk-7"})).status_code == 200
    # A provider's key among words, which no digest here knows, is refused on its looks.
    words = await _call(gw, "POST", "/key/generate", {"name": "team sk-proj-SECRET"})
    assert words.status_code == 400 and "holds one" in words.text
    assert "SECRET" not in words.text


async def test_a_name_holding_a_word_like_a_key_is_not_said_back_by_delete(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    # No key this gateway takes, but a key all the same (another gateway's, a
    # provider's) pasted among words: the name is not a key, a part of it is.
    gw = _gateway(fake_upstream, start_gateway, tmp_path)
    await _call(gw, "POST", "/key/generate", {"name": "team"})
    name = "our sk-elsewhere-SECRET key"
    alone = await _call(gw, "POST", "/key/delete", {"names": [name]})
    assert alone.status_code == 404 and "SECRET" not in alone.text
    some = await _call(gw, "POST", "/key/delete", {"names": [name, "team", "nobody"]})
    assert some.json()["not_found"] == ["nobody", "(a name that looks like a key, not shown)"]


async def test_a_key_named_like_a_key_before_the_rule_still_works_and_is_not_logged(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gw = _gateway(fake_upstream, start_gateway, tmp_path)
    store = gw.gateway.keys
    assert store is not None
    old_name = "sk-old-SECRET"
    key, _ = await store.generate(old_name)  # as /key/generate made it before
    worded, _ = await store.generate("ops sk-worded-SECRET")  # and among words
    with caplog.at_level("INFO", logger="interlock"):
        changed = await _call(gw, "POST", "/key/update",
                              {"name": "ops sk-worded-SECRET", "rpm_limit": 5})
        assert changed.status_code == 200 and worded
    assert "SECRET" not in caplog.text
    assert (await _chat(gw, key)).choices
    with caplog.at_level("INFO", logger="interlock"):
        info = await _call(gw, "GET", f"/key/info?name={old_name}")
        assert info.status_code == 200 and info.json()["name"] == old_name
        changed = await _call(gw, "POST", "/key/update", {"name": old_name, "rpm_limit": 7})
        assert changed.json()["rpm_limit"] == 7
        gone = await _call(gw, "POST", "/key/delete", {"names": [old_name]})
        assert gone.json()["deleted"] == [old_name]
    assert old_name not in caplog.text
    assert "client key (a name that looks like a key, not shown) changed" in caplog.text


@pytest.mark.parametrize(("path", "body", "param", "says"), [
    ("/key/update", {"key": "sk-il-abc", "rpm_limit": 3}, "key",
     "/key/update finds the key by the name it was made with"),
    ("/key/update", {"rpm_limit": 3}, "name", "name: required: which key to change"),
    ("/key/generate", {}, "name", "name: required: the name to know the new key by"),
    ("/key/generate", {"key": "sk-my-own", "name": "x"}, "key",
     "a key of your own choosing goes in the config file's general_settings.api_keys"),
    ("/key/generate", {"name": "x", "team_id": "t1"}, "team_id", "Interlock has no teams"),
])
async def test_a_litellm_request_is_told_how_to_name_its_key(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, path: str, body: dict[str, Any], param: str, says: str) -> None:
    gw = _gateway(fake_upstream, start_gateway, tmp_path)
    answer = await _call(gw, "POST", path, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and says in error["message"], error
    assert "sk-il-abc" not in answer.text and "sk-my-own" not in answer.text


async def test_a_key_named_like_a_key_before_the_rule_is_left_out_of_warnings_and_errors(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "ledger.sqlite"
    first = start_gateway(_config(fake_upstream, database))
    store = first.gateway.keys
    assert store is not None
    old_name = "sk-old-SECRET"
    # As /key/generate made them before the rule: one that expires, one with a budget.
    expiring, _ = await store.generate(old_name, lifetime=timedelta(hours=1))
    await store.generate("sk-budget-SECRET", max_budget=Decimal(5))
    with sqlite3.connect(database) as db:
        db.execute("UPDATE interlock_keys SET max_budget_usd = '-5' "
                   "WHERE name = 'sk-budget-SECRET'")
    later = store.now() + timedelta(hours=2)
    store.now = lambda: later  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="interlock"):
        await store.refresh()
        with pytest.raises(openai.AuthenticationError) as expired:
            await _chat(first, expiring)
    first.stop()
    said = expired.value.body["message"]
    assert "expired at" in said and old_name not in said, said
    assert "sk-budget-SECRET" not in caplog.text
    assert "(a name that looks like a key, not shown): its budget" in caplog.text
    # Later the config gains a key of the same name: the warning leaves it out.
    config = _config(fake_upstream, database)
    config["general_settings"]["api_keys"].append({"name": old_name, "key": "sk-x-0123456789"})
    caplog.clear()
    with caplog.at_level("WARNING", logger="interlock.gateway"):
        start_gateway(config)
    assert "both in the config and made at run time" in caplog.text
    assert old_name not in caplog.text
