"""What `/key/*` makes of odd requests: names Interlock keeps for itself,
LiteLLM's spellings (empty `models`, `duration`, `?key=`), partial deletes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.server.gateways import MASTER_KEY, RunningGateway
from tests.server.test_key_admin import _call, _chat, _config

from interlock.server.auth import key_id
from interlock.testing import FakeUpstream


async def test_a_key_cannot_take_the_name_the_master_key_is_recorded_by(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    # What `interlock spend --by key` shows for the master key's requests.
    master_id = key_id(MASTER_KEY)
    answer = await _call(gw, "POST", "/key/generate", {"name": master_id, "max_budget": 0.001,
                                                      "budget_period": "day"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == ("name", "invalid_value")
    assert "'key-' are kept for the ids" in error["message"]
    # Had it been made, its budget would have been the master key's too.
    for _ in range(2):
        assert (await _chat(gw, MASTER_KEY)).choices


@pytest.mark.parametrize(("name", "says"), [
    ("KEY-1139bd183f6b", "'key-' are kept for the ids"),
    ("(none)", "in parentheses are kept for the labels"),
    ("(unknown or refused)", "in parentheses are kept for the labels"),
    ("team\nclient keys revoked: all", "control characters"),
    ("tab\there", "control characters"),
    ("right\u202eleft", "control characters"),
    (" padded", "spaces at either end"),
    ("padded ", "spaces at either end"),
])
async def test_names_interlock_keeps_or_that_break_a_line_are_refused(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, name: str, says: str) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    answer = await _call(gw, "POST", "/key/generate", {"name": name})
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert says in message and "A client key's name is" in message, message
    assert (await _call(gw, "GET", "/key/list")).json() == {"keys": []}


async def test_names_like_the_reserved_ones_but_not_them_are_made(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    for name in ("keyboard-team", "team (eu)", "ops@example.com", "Équipe données"):
        answer = await _call(gw, "POST", "/key/generate", {"name": name})
        assert answer.status_code == 200, answer.text


async def test_an_empty_models_list_means_every_model_as_on_litellm(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    made = await _call(gw, "POST", "/key/generate", {"name": "all", "models": []})
    assert made.status_code == 200 and made.json()["models"] is None, made.text
    for model in ("budget", "high-quality"):
        assert (await _chat(gw, made.json()["key"], model)).choices
    # And on /key/update: [] gives a limited key every model back.
    limited = await _call(gw, "POST", "/key/generate", {"name": "some", "models": ["budget"]})
    changed = await _call(gw, "POST", "/key/update", {"name": "some", "models": []})
    assert changed.json()["models"] is None
    assert (await _chat(gw, limited.json()["key"], "high-quality")).choices


@pytest.mark.parametrize("every", ["*", "all-proxy-models"])
async def test_litellm_s_spellings_of_every_model_give_a_key_every_model(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, every: str) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    made = await _call(gw, "POST", "/key/generate", {"name": "all", "models": [every]})
    assert made.status_code == 200 and made.json()["models"] is None, made.text
    for model in ("budget", "high-quality"):
        assert (await _chat(gw, made.json()["key"], model)).choices
    # Beside names too (LiteLLM reads the list so), and on /key/update.
    beside = await _call(gw, "POST", "/key/generate", {"name": "b", "models": ["budget", every]})
    assert beside.json()["models"] is None, beside.text
    limited = await _call(gw, "POST", "/key/generate", {"name": "some", "models": ["budget"]})
    changed = await _call(gw, "POST", "/key/update", {"name": "some", "models": [every]})
    assert changed.status_code == 200 and changed.json()["models"] is None, changed.text
    assert (await _chat(gw, limited.json()["key"], "high-quality")).choices


async def test_litellm_s_team_models_is_refused_with_the_reason(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    answer = await _call(gw, "POST", "/key/generate",
                         {"name": "t", "models": ["all-team-models"]})
    assert answer.status_code == 400
    said = answer.json()["error"]["message"]
    assert "or '*' for every name" in said and "Interlock has no teams" in said


@pytest.mark.parametrize(("duration", "seconds"), [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("30h", 108000), ("1d", 86400),
    ("2w", 1209600), (3600, 3600), ("3600", 3600),
])
async def test_durations_are_read_as_litellm_writes_them(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, duration: Any, seconds: int) -> None:
    from datetime import datetime

    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    made = (await _call(gw, "POST", "/key/generate", {"name": "x", "duration": duration})).json()
    lifetime = (datetime.fromisoformat(made["expires_at"])
                - datetime.fromisoformat(made["created_at"]))
    assert lifetime.total_seconds() == seconds


@pytest.mark.parametrize("duration", [True, False, 1.5, 60.0, "1.5h", "1H", "a week", "0s",
                                      -5, "", [], {"days": 1}, "1mo"])
async def test_a_duration_that_is_none_of_those_gets_one_clear_message(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, duration: Any) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    answer = await _call(gw, "POST", "/key/generate", {"name": "x", "duration": duration})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "duration"
    assert error["message"].startswith(f"duration: got {duration!r}; expected a whole number "
                                       "and a unit"), error["message"]
    assert (await _call(gw, "GET", "/key/list")).json() == {"keys": []}


async def test_key_info_says_what_to_pass_and_never_reads_a_key_from_the_url(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    token = (await _call(gw, "POST", "/key/generate", {"name": "team"})).json()["key"]
    for query in ("", "?name=", "?nmae=team"):
        answer = await _call(gw, "GET", "/key/info" + query)
        assert answer.status_code == 400, answer.text
        assert "?name=NAME" in answer.json()["error"]["message"]
    # LiteLLM's ?key=sk-...: refused (a key in a URL is written to access logs),
    # and the key is not said back.
    answer = await _call(gw, "GET", f"/key/info?key={token}")
    assert answer.status_code == 400 and token not in answer.text
    assert "access logs" in answer.json()["error"]["message"]
    # Its SHA-256, which LiteLLM also takes there, is no secret: the key is found by it.
    digest = hashlib.sha256(token.encode()).hexdigest()
    found = await _call(gw, "GET", f"/key/info?key={digest}")
    assert found.status_code == 200 and found.json()["name"] == "team", found.text
    unknown = await _call(gw, "GET", f"/key/info?key={'0' * 64}")
    assert unknown.status_code == 404


async def test_delete_says_which_names_and_keys_were_not_found(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    for name in ("a", "b"):
        await _call(gw, "POST", "/key/generate", {"name": name})
    some = await _call(gw, "POST", "/key/delete", {"names": ["a", "nobody"]})
    assert some.status_code == 200
    assert some.json() == {"deleted": ["a"], "deleted_keys": ["a"], "not_found": ["nobody"]}
    wrong_key = "sk-il-not-a-key-of-ours"
    by_key = await _call(gw, "POST", "/key/delete", {"names": ["b"], "keys": [wrong_key]})
    assert by_key.json() == {"deleted": ["b"], "deleted_keys": ["b"], "keys_not_found": 1}
    assert wrong_key not in by_key.text
    none = await _call(gw, "POST", "/key/delete", {"names": ["x", "y"]})
    assert none.status_code == 404
    assert "named 'x' or 'y'" in none.json()["error"]["message"]
    all_found = await _call(gw, "POST", "/key/delete", {"names": []})
    assert all_found.status_code == 400


async def test_a_key_without_requests_has_spent_0_and_one_unread_has_no_figure(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from interlock.costs.queries import LedgerReader

    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    await _call(gw, "POST", "/key/generate", {"name": "idle"})
    info = (await _call(gw, "GET", "/key/info?name=idle")).json()
    listed = (await _call(gw, "GET", "/key/list")).json()["keys"]
    assert info["spend_usd"] == "0" and listed[0]["spend_usd"] == "0"

    def away(*args: Any, **kwargs: Any) -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("database is locked"))

    # A ledger that cannot be read: the spend is not known, which is not "0".
    monkeypatch.setattr(LedgerReader, "spend_since", away)
    info = (await _call(gw, "GET", "/key/info?name=idle")).json()
    listed = (await _call(gw, "GET", "/key/list")).json()["keys"]
    assert info["spend_usd"] is None and listed[0]["spend_usd"] is None
