"""Client keys made, used, listed and revoked at run time (`/key/*`, `key_store`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from tests.server.gateways import MASTER_KEY, RunningGateway, ledger_rows, three_provider_config

from interlock.costs.settings import LedgerSettings
from interlock.key_store import KEY_PREFIX, KeyStore
from interlock.testing import FakeUpstream

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


def _config(fake: FakeUpstream, database: Path) -> dict[str, Any]:
    config = three_provider_config(fake)
    config["ledger"] = {"database": str(database)}
    config["general_settings"]["api_keys"] = [{"name": "from-config",
                                               "key": "sk-from-config-0123456789"}]
    return config


async def _call(gw: RunningGateway, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.request(method, gw.url + path, json=body,
                                  headers=ADMIN if headers is None else headers)


async def _chat(gw: RunningGateway, key: str, model: str = "budget") -> Any:
    client = gw.openai(api_key=key)
    try:
        return await client.chat.completions.create(model=model, messages=HELLO)
    finally:
        await client.close()


async def test_a_key_is_made_used_listed_and_revoked(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    gw = start_gateway(_config(fake_upstream, database))
    made = await _call(gw, "POST", "/key/generate", {"name": "contractor-7",
                                                    "models": ["budget"]})
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    assert key.startswith(KEY_PREFIX) and made.json()["key_hint"] == key[-4:]
    assert made.json()["models"] == ["budget"] and made.json()["expires_at"] is None
    assert (await _chat(gw, key)).choices
    with pytest.raises(openai.PermissionDeniedError):  # only its models
        await _chat(gw, key, "high-quality")
    # Listed and described without the key; only the master key manages keys.
    listing = await _call(gw, "GET", "/key/list")
    assert [k["name"] for k in listing.json()["keys"]] == ["contractor-7"]
    info = await _call(gw, "GET", "/key/info?name=contractor-7")
    assert info.json()["key_hint"] == key[-4:]
    for response in (listing, info):
        assert key not in response.text
    for who in (key, "sk-from-config-0123456789"):
        refused = await _call(gw, "GET", "/key/list", headers={"authorization": f"Bearer {who}"})
        assert refused.status_code == 403
    gone = await _call(gw, "POST", "/key/delete", {"names": ["contractor-7"]})
    # LiteLLM's proxy answers `deleted_keys`; Interlock's first field stays.
    assert gone.json() == {"deleted": ["contractor-7"], "deleted_keys": ["contractor-7"]}
    with pytest.raises(openai.AuthenticationError):
        await _chat(gw, key)
    gw.stop()
    # Its requests are recorded by its name; the key is stored nowhere.
    rows = ledger_rows(database)
    assert sorted({r["api_key_id"] for r in rows.values()}) == ["contractor-7"]
    with sqlite3.connect(database) as db:
        dump = "\n".join(db.iterdump())
    assert key not in dump and key[len(KEY_PREFIX):] not in dump


async def test_a_made_key_has_its_limits_and_expires(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    limited = (await _call(gw, "POST", "/key/generate",
                           {"key_alias": "batch", "rpm_limit": 1})).json()["key"]
    assert (await _chat(gw, limited)).choices
    with pytest.raises(openai.RateLimitError) as refused:
        await _chat(gw, limited)
    assert "'batch' is over its rpm_limit of 1" in refused.value.body["message"]
    short = (await _call(gw, "POST", "/key/generate",
                         {"name": "trial", "duration": "1s"})).json()
    assert short["expires_at"] is not None
    assert (await _chat(gw, short["key"])).choices
    await asyncio.sleep(1.1)
    with pytest.raises(openai.AuthenticationError) as expired:
        await _chat(gw, short["key"])
    assert "The API key 'trial' expired at" in expired.value.body["message"]


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"name": "x", "modles": ["budget"]}, 400,
     "modles: not a field of a client key; did you mean 'models'?"),
    ({"name": "x", "rpm_limt": 5}, 400, "did you mean 'rpm_limit'?"),
    ({"name": "x", "duration": "a week"}, 400, "duration: got 'a week'"),
    ({"name": "x", "duration": "99999999d"}, 400, "at most 36,500 days"),
    ({"name": "x", "models": ["bugdet"]}, 400, "'bugdet' is not a name clients can ask for"),
    ({"name": "x", "rpm_limit": 0}, 400, "rpm_limit: Input should be greater than or equal"),
    ({"name": "from-config"}, 400, "named 'from-config' exists already"),
    ({"models": ["budget"]}, 400, "name: required: the name to know the new key by"),
    (["not", "an", "object"], 400, "Input should be a valid dictionary"),
])
async def test_what_generate_refuses_and_why(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, body: Any, status: int, says: str) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    answer = await _call(gw, "POST", "/key/generate", body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]["message"]
    assert (await _call(gw, "GET", "/key/list")).json() == {"keys": []}


async def test_a_misspelt_field_is_named_as_the_param(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    said = [(await _call(gw, "POST", "/key/generate", {"name": "x", **field})).json()["error"]
            for field in ({"rpm_limt": 5}, {"rpm_limit": 0})]
    assert [(e["param"], e["code"]) for e in said] == [
        ("rpm_limt", "unknown_parameter"), ("rpm_limit", "invalid_value")]


async def test_names_are_given_once_and_deleting_nothing_is_a_404(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    first = await _call(gw, "POST", "/key/generate", {"name": "team"})
    again = await _call(gw, "POST", "/key/generate", {"name": "team"})
    assert first.status_code == 200 and again.status_code == 400
    assert again.json()["error"]["code"] == "name_taken"
    missing = await _call(gw, "POST", "/key/delete", {"names": ["nobody"]})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    assert (await _call(gw, "POST", "/key/delete", {"both": 1})).status_code == 400
    assert (await _call(gw, "GET", "/key/generate")).status_code == 405
    assert (await _call(gw, "GET", "/key/info?name=nobody")).status_code == 404
    # Revoked by the key itself, as LiteLLM's {"keys": [...]} does.
    by_key = await _call(gw, "POST", "/key/delete", {"keys": [first.json()["key"]]})
    # By name, not the key given: a response body is no place to echo a secret.
    assert by_key.json() == {"deleted": ["team"], "deleted_keys": ["team"]}
    assert first.json()["key"] not in by_key.text


async def test_without_a_ledger_database_the_key_api_says_what_it_needs(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(three_provider_config(fake_upstream))  # ledger: {database: null}
    answer = await _call(gw, "POST", "/key/generate", {"name": "x"})
    assert answer.status_code == 501
    assert "set ledger.database" in answer.json()["error"]["message"]


async def test_a_key_made_by_one_gateway_reaches_another_on_the_same_database(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    one = start_gateway(_config(fake_upstream, database))
    two = start_gateway(_config(fake_upstream, database))
    key = (await _call(one, "POST", "/key/generate", {"name": "shared"})).json()["key"]
    store = two.gateway.keys
    assert store is not None
    # Until its next read the other replica does not know the key: the 401 says
    # the key may be too new there rather than just wrong (a client gives up on it).
    with pytest.raises(openai.AuthenticationError, match="another replica is known here"):
        await _chat(two, key)
    with pytest.raises(openai.AuthenticationError) as wrong:
        await _chat(two, "sk-not-made-here-0123456789")
    assert "another replica" not in str(wrong.value)
    await store.refresh()  # what its own refresh does every few seconds
    assert (await _chat(two, key)).choices
    await _call(one, "POST", "/key/delete", {"names": ["shared"]})
    await store.refresh()
    with pytest.raises(openai.AuthenticationError):
        await _chat(two, key)


async def test_the_store_keeps_digests_and_survives_a_database_it_cannot_reach(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = LedgerSettings(database=str(tmp_path / "keys.sqlite"))
    store = KeyStore(settings)
    await store.start()
    token, key = await store.generate("a", rpm_limit=5)
    assert store.find(token.encode()) == key and store.find(b"sk-il-other") is None
    again = KeyStore(settings)
    await again.start()
    assert again.find(token.encode()) == key  # read back from the database
    await again.aclose()
    await store.aclose()
    # Nothing listens on port 9: the store starts empty, says why, and refuses
    # to make a key it could not keep.
    away = KeyStore(LedgerSettings(database="postgresql+psycopg://nobody@127.0.0.1:9/none"))
    with caplog.at_level("WARNING", logger="interlock.key_store"):
        await away.start()
    assert "run-time keys could not be read from the ledger's database" in caplog.text
    assert away.listed() == []
    with pytest.raises(sa.exc.OperationalError):
        await away.generate("b")
    assert away.listed() == []
    await away.aclose()


async def _made_elsewhere(database: Path) -> str:
    """A key made in a ledger database at `database` by another process."""
    store = KeyStore(LedgerSettings(database=str(database)))
    await store.start()
    token, _ = await store.generate("made-before")
    await store.aclose()
    return token


async def test_a_process_started_while_the_database_is_away_says_retry_to_run_time_keys(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # It had read no key, yet answered each run-time key 401, which clients give
    # up on. It stays ready, saying so: the master key and config keys, maybe all
    # its traffic, work (unready, every replica restarted in a database outage
    # took the whole service down). A token no run-time key can be is a 401 still.
    ready_file = tmp_path / "made" / "ledger.sqlite"
    token = await _made_elsewhere(ready_file)
    database = tmp_path / "ledger.sqlite"
    database.mkdir()  # a folder where the file should be: the database cannot open
    with caplog.at_level("INFO", logger="interlock.key_store"):
        gw = start_gateway(_config(fake_upstream, database))
        readiness = await _call(gw, "GET", "/health/readiness", headers={})
        assert readiness.status_code == 200
        assert readiness.json()["run_time_keys_read"] is False
        for unknown in (token, "sk-il-not-a-key-at-all"):
            answer = await _call(gw, "GET", "/v1/models",
                                 headers={"authorization": f"Bearer {unknown}"})
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "keys_not_loaded"
            assert answer.headers["retry-after"] == "5"
        # The keys it does know work as ever; no key at all, or one no run-time key
        # can be (a typo: the SDKs retried its 503s), is still a 401.
        for known in (MASTER_KEY, "sk-from-config-0123456789"):
            answer = await _call(gw, "GET", "/v1/models",
                                 headers={"authorization": f"Bearer {known}"})
            assert answer.status_code == 200
        assert (await _call(gw, "GET", "/v1/models", headers={})).status_code == 401
        for wrong in ({"authorization": "Bearer sk-typo-0123456789"}, {"x-api-key": ""}):
            assert (await _call(gw, "GET", "/v1/models", headers=wrong)).status_code == 401
        assert "none read yet" in caplog.text and "read before" not in caplog.text

        # The database comes back; the next read (every 5 s) finds the key.
        database.rmdir()
        for made in ready_file.parent.iterdir():
            made.rename(tmp_path / made.name)
        store = gw.gateway.keys
        assert store is not None
        await store._load()
    assert (await _call(gw, "GET", "/health/readiness", headers={})).json()[
        "run_time_keys_read"] is True
    assert (await _chat(gw, token)).choices
    with pytest.raises(openai.AuthenticationError):
        await _chat(gw, "sk-il-not-a-key-at-all")
    assert "run-time keys read from the ledger's database again, after 1 failed" in caplog.text


async def test_an_outage_of_the_key_store_is_told_when_it_begins_and_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Each worker said so at every refresh (every 5 s), and never that it was over.
    store = KeyStore(LedgerSettings(database=str(tmp_path / "keys.sqlite")))
    await store.start()
    await store.generate("a")

    def refuse() -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))

    store._read_all = refuse  # type: ignore[assignment,method-assign]
    with caplog.at_level("INFO", logger="interlock.key_store"):
        for _ in range(4):
            await store._load()
        assert caplog.text.count("could not be read") == 1
        assert "serving the 1 read before" in caplog.text
        # Why, not only the exception's type: a refused connection, a wrong
        # password and a missing database were all "(OperationalError)".
        assert "connection refused" in caplog.text
        del store._read_all  # the database is back
        await store._load()
        await store._load()
    assert caplog.text.count("read from the ledger's database again, after 4 failed") == 1
    assert [k.name for k in store.listed()] == ["a"]
    await store.aclose()


async def test_a_database_that_fails_a_write_is_a_503_that_changes_nothing(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    store = gw.gateway.keys
    assert store is not None

    def refuse(*args: Any) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    store._insert = refuse  # type: ignore[method-assign]
    answer = await _call(gw, "POST", "/key/generate", {"name": "x"})
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "database_unavailable"
    assert (await _call(gw, "GET", "/key/list")).json() == {"keys": []}


async def test_a_config_key_named_as_a_run_time_key_is_warned_of(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "ledger.sqlite"
    first = start_gateway(_config(fake_upstream, database))
    assert (await _call(first, "POST", "/key/generate", {"name": "team"})).status_code == 200
    first.stop()
    # Later the config gains a key of that name: the gateway says so when it reads the keys.
    config = _config(fake_upstream, database)
    config["general_settings"]["api_keys"].append({"name": "team", "key": "sk-team-0123456789"})
    with caplog.at_level("WARNING", logger="interlock.gateway"):
        start_gateway(config)
    assert "the client key 'team' is both in the config and made at run time" in caplog.text


def test_every_key_path_takes_the_master_key() -> None:
    from interlock.server.auth import ADMIN_PATHS
    from interlock.server.key_admin import METHODS

    assert set(METHODS) <= ADMIN_PATHS


async def test_a_key_s_models_limits_and_expiry_are_changed_in_place(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    key = (await _call(gw, "POST", "/key/generate",
                       {"name": "team", "models": ["budget"], "duration": "1d"})).json()["key"]
    with pytest.raises(openai.PermissionDeniedError):
        await _chat(gw, key, "high-quality")
    changed = await _call(gw, "POST", "/key/update", {"name": "team", "models": None,
                                                     "rpm_limit": 1, "duration": None})
    assert changed.status_code == 200, changed.text
    assert changed.json()["models"] is None and changed.json()["expires_at"] is None
    assert changed.json()["rpm_limit"] == 1 and key not in changed.text
    # The same key now reaches every model, once a minute.
    assert (await _chat(gw, key, "high-quality")).choices
    with pytest.raises(openai.RateLimitError):
        await _chat(gw, key, "budget")
    # Fields not given are kept.
    again = await _call(gw, "POST", "/key/update", {"name": "team", "tpm_limit": 5000})
    assert (again.json()["rpm_limit"], again.json()["tpm_limit"]) == (1, 5000)
    assert (await _call(gw, "GET", "/key/info?name=team")).json()["tpm_limit"] == 5000
    missing = await _call(gw, "POST", "/key/update", {"name": "nobody", "rpm_limit": 5})
    assert missing.status_code == 404
    wrong = await _call(gw, "POST", "/key/update", {"name": "team", "models": ["bugdet"]})
    assert wrong.status_code == 400 and "'bugdet' is not a name" in wrong.text


async def test_a_made_key_spends_its_budget_and_is_refused_after(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    free = (await _call(gw, "POST", "/key/generate", {"name": "free"})).json()["key"]
    assert gw.gateway.budgets is None  # no budget anywhere: no gate on the way
    made = await _call(gw, "POST", "/key/generate",
                       {"name": "intern", "max_budget": "0.000000001", "budget_period": "day"})
    assert made.status_code == 200, made.text
    assert (made.json()["max_budget"], made.json()["budget_period"]) == ("0.000000001", "day")
    key = made.json()["key"]
    # One nano-dollar: the first call is let through, and spends more than that.
    assert (await _chat(gw, key)).choices
    with pytest.raises(openai.RateLimitError) as refused:
        await _chat(gw, key)
    assert refused.value.body["type"] == "budget_exceeded"
    assert "api_key 'intern' has spent its $0.000000001 a day" in refused.value.body["message"]
    status = (await _call(gw, "GET", "/key/info?name=intern")).json()["budget_status"]
    assert status["exhausted"] is True and float(status["spent_usd"]) > 0
    assert (await _chat(gw, free)).choices  # other keys' requests are not counted
    free_info = (await _call(gw, "GET", "/key/info?name=free")).json()
    assert free_info["max_budget"] is None and free_info["budget_status"] is None
    # A larger budget lets it go on, its spend so far kept; none lets it go freely.
    raised = await _call(gw, "POST", "/key/update", {"name": "intern", "max_budget": 5})
    assert raised.json()["max_budget"] == "5" and raised.json()["budget_period"] == "day"
    assert (await _chat(gw, key)).choices
    after = (await _call(gw, "GET", "/key/info?name=intern")).json()["budget_status"]
    assert float(after["spent_usd"]) > float(status["spent_usd"]) and not after["exhausted"]
    await _call(gw, "POST", "/key/update", {"name": "intern", "max_budget": 0.000000001})
    with pytest.raises(openai.RateLimitError):
        await _chat(gw, key)
    await _call(gw, "POST", "/key/update", {"name": "intern", "max_budget": None})
    assert (await _chat(gw, key)).choices
    # Another gateway on the same database reads the budget with the key.
    other = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    await _call(gw, "POST", "/key/update", {"name": "intern", "max_budget": 2,
                                            "budget_period": 12})
    assert other.gateway.keys is not None
    await other.gateway.keys.refresh()
    assert other.gateway.budgets is not None
    assert other.gateway.budgets.key_budgets["intern"].period == 12


@pytest.mark.parametrize(("body", "says"), [
    ({"name": "x", "max_budget": 5, "budget_duration": "30d"},
     "budget_duration: Interlock's budgets run by calendar period"),
    ({"name": "x", "budget_period": "day"}, "budget_period: a period is for a budget"),
    ({"name": "x", "max_budget": 0}, "max_budget: Input should be greater than 0"),
    ({"name": "x", "max_budget": 5, "budget_period": -1},
     "budget_period: got -1; expected 'day', 'month' or a number of hours from a minute"),
    # The config's bounds: a vanishing or endless period is no budget.
    ({"name": "x", "max_budget": 5, "budget_period": 1e-300},
     "budget_period: got 1e-300; expected"),
    ({"name": "x", "max_budget": 5, "budget_period": 1e300},
     "budget_period: got 1e+300; expected"),
    ({"name": "x", "max_budget": 5, "budget_period": "week"},
     "budget_period: got 'week'; expected"),
])
async def test_what_a_budget_refuses_and_why(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, body: Any, says: str) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    answer = await _call(gw, "POST", "/key/generate", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"].startswith(says)


async def test_keys_from_before_budgets_are_read_without_one(tmp_path: Path) -> None:
    # A database migrated up to 0006: its keys table gains the budget columns.
    database = tmp_path / "keys.sqlite"
    store = KeyStore(LedgerSettings(database=str(database)))
    await store.read()
    token, _ = await store.generate("old")
    await store.aclose()
    with sqlite3.connect(database) as db:
        for column in ("max_budget_usd", "budget_period"):
            db.execute(f"ALTER TABLE interlock_keys DROP COLUMN {column}")
        db.execute("DELETE FROM interlock_migrations WHERE name = '0007_key_budgets'")
    again = KeyStore(LedgerSettings(database=str(database)))
    await again.read()
    found = again.find(token.encode())
    assert found is not None and found.budget() is None
    await again.aclose()


async def test_a_key_s_spend_outlives_a_restart(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    first = start_gateway(_config(fake_upstream, database))
    key = (await _call(first, "POST", "/key/generate",
                       {"name": "intern", "max_budget": "0.000000001"})).json()["key"]
    assert (await _chat(first, key)).choices
    first.stop()  # its ledger's rows are written as it stops
    # The keys are read before the budgets' counts start from the ledger's record.
    second = start_gateway(_config(fake_upstream, database))
    with pytest.raises(openai.RateLimitError):
        await _chat(second, key)


async def test_a_budget_changed_by_hand_into_nonsense_is_warned_of_once(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "ledger.sqlite"
    gw = start_gateway(_config(fake_upstream, database))
    for name in ("odd", "fine"):
        await _call(gw, "POST", "/key/generate", {"name": name, "max_budget": 5})
    with sqlite3.connect(database) as db:
        db.execute("UPDATE interlock_keys SET max_budget_usd = '-5' WHERE name = 'odd'")
    store = gw.gateway.keys
    assert store is not None
    with caplog.at_level("WARNING", logger="interlock.gateway"):
        await store.refresh()
        await store.refresh()
    assert caplog.text.count("client key 'odd': its budget in the database is not one") == 1
    assert gw.gateway.budgets is not None
    assert list(gw.gateway.budgets.key_budgets) == ["fine"]


async def test_a_key_s_spend_is_listed_from_the_ledger(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path) -> None:
    gw = start_gateway(_config(fake_upstream, tmp_path / "ledger.sqlite"))
    await _call(gw, "POST", "/key/generate", {"name": "idle"})
    token = (await _call(gw, "POST", "/key/generate", {"name": "caller"})).json()["key"]
    fresh = (await _call(gw, "GET", "/key/list")).json()["keys"]
    assert {k["name"]: k["spend_usd"] for k in fresh} == {"caller": "0", "idle": "0"}
    for _ in range(2):
        assert (await _chat(gw, token)).choices
    ledger = gw.gateway.ledger
    assert ledger is not None and await ledger.flush(timeout=5)
    info = (await _call(gw, "GET", "/key/info?name=caller")).json()
    assert float(info["spend_usd"]) > 0 and info["budget_status"] is None
    listed = {k["name"]: k["spend_usd"] for k in
              (await _call(gw, "GET", "/key/list")).json()["keys"]}
    assert listed["caller"] == info["spend_usd"] and listed["idle"] == "0"


async def test_a_key_s_budget_after_redis_lost_its_data_shows_its_spend_before_any_call(
        fake_upstream: FakeUpstream, start_gateway: Callable[..., RunningGateway],
        tmp_path: Path, redis_url: str) -> None:
    # Redis restarted empty: until the key's next request re-seeded its count,
    # /key/info and /metrics said the key's budget was unspent.
    import uuid

    import redis.asyncio as aioredis

    config = _config(fake_upstream, tmp_path / "ledger.sqlite")
    prefix = f"interlock-test-{uuid.uuid4().hex}"
    config["router_settings"].update(redis_url=redis_url, redis_prefix=prefix)
    gw = start_gateway(config)
    direct = aioredis.Redis.from_url(redis_url)
    try:
        key = (await _call(gw, "POST", "/key/generate",
                           {"name": "intern", "max_budget": 5, "budget_period": "day"})).json()
        assert (await _chat(gw, key["key"])).choices
        before = (await _call(gw, "GET", "/key/info?name=intern")).json()["budget_status"]
        assert float(before["spent_usd"]) > 0
        ledger = gw.gateway.ledger
        assert ledger is not None and await ledger.flush(timeout=5)
        lost = [k async for k in direct.scan_iter(match=f"{prefix}:budget:*")]
        assert lost and await direct.delete(*lost)
        info = (await _call(gw, "GET", "/key/info?name=intern")).json()
        assert info["budget_status"]["spent_usd"] == before["spent_usd"] == info["spend_usd"]
        metrics = (await _call(gw, "GET", "/metrics")).text.splitlines()
        [gauge] = [line for line in metrics if line.startswith(
            'interlock_budget_spent_usd{target="api_key",name="intern",period="day"} ')]
        assert float(gauge.split()[-1]) == float(before["spent_usd"])
    finally:
        keys = [k async for k in direct.scan_iter(match=f"{prefix}:*")]
        if keys:
            await direct.delete(*keys)
        await direct.aclose()
