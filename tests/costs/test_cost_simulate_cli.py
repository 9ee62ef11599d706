"""The simulator (the seed's table to the cent), and the spend, prices and report commands."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interlock.cli.main import app
from interlock.costs.ledger import Ledger, LedgerRow
from interlock.costs.prices import ModelPrice
from interlock.costs.queries import LedgerReader, UsageRecord
from interlock.costs.settings import LedgerSettings
from interlock.costs.simulate import (
    Profile,
    Strategy,
    StrategyError,
    default_strategies,
    replay,
    seed_prices,
    simulate,
)

runner = CliRunner()


def test_seed_table_reproduced_exactly_by_the_function() -> None:
    results = simulate(Profile(100_000, 1_000, 500), default_strategies(), seed_prices())
    costs = {r.strategy.name: r.monthly_usd for r in results}
    assert costs == {"all-opus": Decimal("5250"), "all-gemini-pro": Decimal("625"),
                     "mix": Decimal("632")}
    mix = next(r for r in results if r.strategy.name == "mix")
    assert mix.per_model == {"claude-sonnet-4": Decimal(315), "gemini-2.5-pro": Decimal("312.5"),
                             "gemini-2.0-flash-lite": Decimal("4.5")}
    assert mix.saving_usd == Decimal(4618)


def test_seed_table_through_the_cli() -> None:
    result = runner.invoke(app, ["cost", "simulate", "--prices", "seed", "--requests", "100000",
                                 "--input-tokens", "1000", "--output-tokens", "500"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "$5,250.00" in rows["all-opus"]
    assert "$625.00" in rows["all-gemini-pro"]
    assert "$632.00" in rows["mix"]
    assert "$4,618.00" in rows["mix"]  # saving against the first strategy


def test_explicit_strategies_and_baseline() -> None:
    result = runner.invoke(app, [
        "cost", "simulate", "--prices", "seed",
        "--strategy", "all-opus=claude-opus-4.5:1",
        "--strategy", "mix=claude-sonnet-4:0.3,gemini-2.5-pro:0.5,gemini-2.0-flash-lite:0.2",
        "--baseline", "mix", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_name = {s["name"]: s for s in data["strategies"]}
    assert Decimal(by_name["mix"]["monthly_usd"]) == Decimal("632")
    assert Decimal(by_name["all-opus"]["saving_usd"]) == Decimal("-4618")


def test_default_prices_say_where_they_differ_from_the_seed() -> None:
    result = runner.invoke(app, ["cost", "simulate"])
    assert result.exit_code == 0, result.output
    seed = seed_prices()
    from interlock.costs.simulate import default_price

    differing = [m for m, p in seed.items()
                 if (default_price(m) or p).input_per_token != p.input_per_token]
    if differing:
        assert "differ from the seed" in result.output
        for model in differing:
            assert model in result.output.split("differ from the seed")[1]
    else:
        assert "differ from the seed" not in result.output


@pytest.mark.parametrize("text", ["mix=a:0.5,b:0.4", "x=a:abc", "=a", "mix=a:150%,b:-50%"])
def test_bad_strategies_are_refused(text: str) -> None:
    with pytest.raises(StrategyError):
        Strategy.parse(text)
    result = runner.invoke(app, ["cost", "simulate", "--strategy", text])
    assert result.exit_code == 2


def test_strategy_syntax() -> None:
    s = Strategy.parse("m=a:30%,b:0.7")
    assert s.shares == (("a", Decimal("0.3")), ("b", Decimal("0.7")))
    assert Strategy.parse("gpt-4o").shares == (("gpt-4o", Decimal(1)),)


def test_unknown_price_is_reported_not_zero() -> None:
    result = runner.invoke(app, ["cost", "simulate", "--strategy", "x=no-such-model-q"])
    assert result.exit_code == 0
    assert "unknown" in result.output and "$0.00 " not in result.output
    assert "--price 'no-such-model-q=IN,OUT'" in result.output  # says how to give one


# --------------------------------------------------------------------------- the ledger commands


async def _recorded(db: str, rows: Iterable[LedgerRow]) -> None:
    """`rows` written to a new ledger at `db`."""
    ledger = Ledger(LedgerSettings(database=db, flush_interval=0.01))
    await ledger.start()
    for row in rows:
        ledger.record(row)
    assert await ledger.flush(5)
    await ledger.aclose()


async def _fill(db: str) -> None:
    ledger = Ledger(LedgerSettings(database=db, flush_interval=0.01))
    await ledger.start()
    start = datetime(2026, 4, 1, 9, tzinfo=UTC)
    plan = [  # group, deployment, provider, model, $/M in, $/M out, count
        ("high-quality", "sonnet", "anthropic", "claude-sonnet-4-20250514", 3, 15, 30),
        ("cost-optimized", "gemini-pro", "gemini", "gemini-2.5-pro", Decimal("1.25"), 10, 50),
        ("budget", "flash-lite", "gemini", "gemini-2.0-flash-lite", Decimal("0.075"),
         Decimal("0.3"), 20),
    ]
    n = 0
    for group, dep, provider, model, pin, pout, count in plan:
        for i in range(count):
            cost = (1000 * Decimal(pin) + 500 * Decimal(pout)) / 1_000_000
            ledger.record(LedgerRow(
                request_id=f"r{n}", requested_model="router-mf-0.5", routed_group=group,
                deployment=dep, provider=provider, model=model, input_tokens=1000,
                output_tokens=500, cost_usd=cost, latency_ms=100.0,
                created_at=start + timedelta(days=i % 3, minutes=n), api_key_id=f"k{i % 2}",
                fallbacks=1 if (dep == "gemini-pro" and i < 5) else 0, router="mf"))
            n += 1
    ledger.record(LedgerRow(request_id="err", routed_group="high-quality", deployment="sonnet",
                            provider="anthropic", status="error", error_class="RateLimited",
                            attempts=3, created_at=start))
    await ledger.aclose()
    assert ledger.dropped == 0


async def test_spend_command(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _fill(db)
    result = runner.invoke(app, ["spend", "--database", db, "--by", "group", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    lines = {line["key"]: line for line in data["lines"]}
    # The seed's mix, on 100 requests: 30 Sonnet, 50 Gemini Pro, 20 Flash-Lite = $0.632.
    assert Decimal(data["total_cost_usd"]) == Decimal("0.632")
    assert Decimal(lines["high-quality"]["cost_usd"]) == Decimal("0.315")
    assert lines["high-quality"]["errors"] == 1
    assert lines["high-quality"]["requests"] == 31
    text = runner.invoke(app, ["spend", "--database", db, "--by", "day"])
    assert text.exit_code == 0
    assert "2026-04-01" in text.output and "$0.63" in text.output
    keys = runner.invoke(app, ["spend", "--database", db, "--by", "key", "--json"])
    assert {line["key"] for line in json.loads(keys.output)["lines"]} == {"k0", "k1", "(none)"}
    missing = runner.invoke(app, ["spend", "--database", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 1
    # No request searched the web: no searches column, and 0 in JSON.
    assert "searches" not in text.output
    assert {line["web_searches"] for line in data["lines"]} == {0}


async def test_spend_json_writes_dollars_plainly(tmp_path: Path) -> None:
    # A free group's sum of nano-dollars came out as "0E-9", a priced one's with
    # a tail of zeros: scripts reading the JSON as text got three spellings.
    db = str(tmp_path / "ledger.sqlite")
    await _recorded(db, (
        LedgerRow(request_id=f"r{i}", routed_group=group, status="ok", cost_usd=Decimal(cost))
        for i, (group, cost) in enumerate((("free", "0"), ("paid", "0.002009")))))
    data = json.loads(runner.invoke(app, ["spend", "--database", db, "--by", "group",
                                          "--json"]).output)
    assert {line["key"]: line["cost_usd"] for line in data["lines"]} == {
        "free": "0", "paid": "0.002009"}
    assert data["total_cost_usd"] == "0.002009"


async def test_spend_and_report_show_a_tiny_cost_as_a_cost(tmp_path: Path) -> None:
    # An embedding's cost below half a millionth of a dollar printed as "$0."
    # in `spend`, and as "$0.<" in the report's page.
    db = str(tmp_path / "ledger.sqlite")
    await _recorded(db, [LedgerRow(request_id="r0", routed_group="embed", status="ok",
                                   cost_usd=Decimal("0.00000016"))])
    text = runner.invoke(app, ["spend", "--database", db, "--by", "group"]).output
    assert "$0.00000016" in text and "$0. " not in text and not text.rstrip().endswith("$0.")
    out = tmp_path / "report.html"
    assert runner.invoke(app, ["report", "--database", db, "--out", str(out)]).exit_code == 0
    page = out.read_text()
    assert "$0.00000016" in page and "$0.<" not in page


async def test_spend_counts_the_web_searches_billed(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _recorded(db, (
        LedgerRow(request_id=f"r{i}", routed_group=group, status="ok",
                  web_searches=searches, cost_usd=Decimal("0.01"))
        for i, (group, searches) in enumerate((("research", 3), ("research", 2), ("chat", 0)))))
    data = json.loads(runner.invoke(app, ["spend", "--database", db, "--by", "group",
                                          "--json"]).output)
    assert {line["key"]: line["web_searches"] for line in data["lines"]} == {
        "chat": 0, "research": 5}
    text = runner.invoke(app, ["spend", "--database", db, "--by", "group"]).output
    header, _, chat, research, _, total = text.splitlines()
    assert header.split()[-2:] == ["searches", "cost"]
    assert chat.split()[-2:] == ["0", "$0.01"] and research.split()[-2:] == ["5", "$0.02"]
    assert total.split()[-2:] == ["5", "$0.03"]


async def test_spend_by_the_service_tier_served(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _recorded(db, (
        LedgerRow(request_id=f"r{i}", routed_group="chat", status="ok", service_tier=tier,
                  cost_usd=Decimal(cost))
        for i, (tier, cost) in enumerate((("flex", "0.01"), ("flex", "0.02"),
                                          ("priority", "0.08"), (None, "0.04")))))
    data = json.loads(runner.invoke(app, ["spend", "--database", db, "--by", "tier",
                                          "--json"]).output)
    assert data["by"] == "tier"
    assert {line["key"]: (line["requests"], Decimal(line["cost_usd"]))
            for line in data["lines"]} == {"(none)": (1, Decimal("0.04")),
                                           "flex": (2, Decimal("0.03")),
                                           "priority": (1, Decimal("0.08"))}
    text = runner.invoke(app, ["spend", "--database", db, "--by", "tier"]).output
    assert text.splitlines()[0].split()[0] == "tier"
    wrong = runner.invoke(app, ["spend", "--database", db, "--by", "teir"])
    assert wrong.exit_code != 0
    assert "expected day, group, deployment, key, model, tier or user" in " ".join(
        wrong.output.replace("│", " ").split())


async def test_spend_by_the_end_user_the_client_named(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _recorded(db, (
        LedgerRow(request_id=f"r{i}", routed_group="chat", status="ok", end_user=user,
                  cost_usd=Decimal(cost))
        # "": a row from before an empty `user` was recorded as none, which it names.
        for i, (user, cost) in enumerate((("acme", "0.01"), ("acme", "0.02"),
                                          ("globex", "0.08"), (None, "0.04"), ("", "0.01")))))
    data = json.loads(runner.invoke(app, ["spend", "--database", db, "--by", "user",
                                          "--json"]).output)
    assert {line["key"]: (line["requests"], Decimal(line["cost_usd"]))
            for line in data["lines"]} == {"(none)": (2, Decimal("0.05")),
                                           "acme": (2, Decimal("0.03")),
                                           "globex": (1, Decimal("0.08"))}


async def test_simulate_from_ledger(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _fill(db)
    result = runner.invoke(app, ["cost", "simulate", "--from-ledger", "--database", db,
                                 "--prices", "seed", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["requests"] == 100
    assert Decimal(data["recorded_usd"]) == Decimal("0.632")
    # Dollars as spend --json writes them: no exponent, no tail of zeros.
    assert data["recorded_usd"] == "0.632"
    assert all("E" not in v and v == f"{Decimal(v).normalize():f}"
               for v in data["single_model_usd"].values())
    single = {m: Decimal(v) for m, v in data["single_model_usd"].items()}
    assert single["claude-opus-4.5"] == Decimal("5.25")  # 100 x the seed's Opus request
    assert single["gemini-2.5-pro"] == Decimal("0.625")


async def test_report_renders_a_page_with_images(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _fill(db)
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--database", db, "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    # Self-contained: nothing loaded from elsewhere.
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page
    # The saving against the most expensive group (all on Sonnet 4: 100 x $0.0105 = $1.05).
    assert "high-quality" in result.output
    assert "$1.05" in result.output and "$0.418" in result.output
    assert "gemini-pro: 0 errors, 5 fallbacks" in result.output
    assert "sonnet: 1 errors" in result.output


@pytest.mark.parametrize("command", [["spend"], ["report"], ["cost", "simulate", "--from-ledger"]])
def test_ledger_commands_with_a_config_without_a_ledger_say_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    # Another gateway's ledger at the default path in the working directory...
    monkeypatch.chdir(tmp_path)
    Path(LedgerSettings().database or "").write_bytes(b"")
    config = tmp_path / "c.yaml"
    config.write_text("model_list:\n"
                      "  - model_name: a\n"
                      "    litellm_params: {model: openai/gpt-4o, api_key: x}\n"
                      "ledger: {database: null}\n")
    result = runner.invoke(app, [*command, "--config", str(config)])
    # ...is not this config's.
    assert result.exit_code == 1
    assert "has no ledger (ledger.database is null)" in result.output
    assert "--database" in result.output


@pytest.mark.parametrize("command", [["spend"], ["report"], ["cost", "simulate", "--from-ledger"]])
def test_ledger_commands_without_a_ledger_say_so(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no-dir" / "ledger.sqlite"
    result = runner.invoke(app, [*command, "--database", str(missing)])
    assert result.exit_code == 1
    assert "no ledger at" in result.output
    # Reading must not leave an empty database (or its folder) behind.
    assert not missing.parent.exists()
    # An unreachable server: one line naming it, its password hidden, no traceback.
    url = "postgresql+psycopg://reader:pw-FAKE-42@127.0.0.1:1/ledger"
    down = runner.invoke(app, [*command, "--database", url])
    assert down.exit_code == 1
    assert "cannot read the ledger at postgresql+psycopg://reader:" in down.output
    assert "pw-FAKE-42" not in down.output and "Traceback" not in down.output


def test_prices_command() -> None:
    result = runner.invoke(app, ["prices", "gemini-2.0-flash-lite", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["source"] == "genai-prices"
    assert Decimal(row["input_per_million"]) == Decimal("0.075")
    unknown = runner.invoke(app, ["prices", "no-such-model-zz"])
    assert unknown.exit_code == 1 and "unknown" in unknown.output


def test_prices_command_with_a_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: hq\n"
        "    litellm_params: {model: anthropic/claude-sonnet-4-20250514, api_key: x}\n"
        "  - model_name: local\n"
        "    litellm_params: {model: openai/my-llama, api_key: x, api_base: 'http://127.0.0.1:1'}\n"
        "  - model_name: cheap\n"
        "    litellm_params: {model: openai/my-small, api_key: x, api_base: 'http://127.0.0.1:1',\n"
        "                     input_cost_per_token: 0.0000001, output_cost_per_token: 0.0000002}\n"
        "prices:\n"
        "  hq: {input_cost_per_million: 2, output_cost_per_million: 8}\n")
    result = runner.invoke(app, ["prices", "--config", str(config), "--json"])
    rows = {r["detail"].split(",")[1].split()[1].rstrip(")"): r for r in json.loads(result.output)}
    assert rows["hq"]["source"] == "config" and Decimal(rows["hq"]["input_per_million"]) == 2
    assert rows["cheap"]["source"] == "deployment"
    assert rows["local"]["price"] is None
    assert result.exit_code == 1  # one deployment has no known price


def test_a_replay_prices_the_recorded_searches_on_each_model() -> None:
    no_search_price = ModelPrice.per_million(1, 2)
    searching = dataclasses.replace(no_search_price, per_web_search=Decimal("0.01"))
    record = UsageRecord("g", "d", "anthropic", "m", input_tokens=1_000_000,
                         cached_input_tokens=0, output_tokens=0, cost_usd=Decimal("1.02"),
                         web_searches=2)
    out = replay([record], {"a": searching, "b": no_search_price})
    # $1 of input either way; the two searches cost where the model prices them.
    assert out.single_model == {"a": Decimal("1.02"), "b": Decimal(1)}


def test_a_replay_prices_each_request_at_the_tier_it_was_served_at() -> None:
    standard = ModelPrice.per_million(2, 8)
    tiered = dataclasses.replace(standard, service_tiers=(
        ("flex", ModelPrice.per_million(1, 4)), ("priority", ModelPrice.per_million(4, 16))))
    records = [UsageRecord("g", "d", "openai", "m", input_tokens=1_000_000,
                           cached_input_tokens=0, output_tokens=0, cost_usd=Decimal(1),
                           service_tier=tier) for tier in ("flex", "priority", None)]
    out = replay(records, {"tiered": tiered, "standard-only": standard})
    # flex $1 + priority $4 + standard $2 where the tiers are priced; $2 each elsewhere.
    assert out.single_model == {"tiered": Decimal(7), "standard-only": Decimal(6)}


async def test_the_ledger_replay_reads_the_tier_each_request_was_served_at(
        tmp_path: Path) -> None:
    db = str(tmp_path / "l.sqlite")
    await _recorded(db, (
        LedgerRow(request_id=f"r{i}", routed_group="g", deployment="d", provider="openai",
                  model="m", status="ok", input_tokens=1_000_000, output_tokens=0,
                  cost_usd=Decimal(1), service_tier=tier)
        for i, tier in enumerate(("flex", None))))
    with LedgerReader(db) as reader:
        assert sorted(str(r.service_tier) for r in reader.usage()) == ["None", "flex"]


def _priced_config(tmp_path: Path) -> Path:
    """A config whose `prices:` overrides a model one of its groups uses."""
    config = tmp_path / "priced.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: high-quality\n"
        "    litellm_params: {model: anthropic/claude-sonnet-4-20250514, api_key: x}\n"
        "  - model_name: local\n"
        "    litellm_params: {model: openai/my-llama, api_key: x, api_base: 'http://127.0.0.1:1',\n"
        "                     input_cost_per_million: 0.05, output_cost_per_million: 0.1}\n"
        "prices:\n"
        "  claude-sonnet-4-20250514: {input_cost_per_million: 2.5, output_cost_per_million: 12}\n")
    return config


def test_prices_of_named_models_come_from_the_config_as_in_the_simulator(
        tmp_path: Path) -> None:
    config = _priced_config(tmp_path)
    names = ["claude-sonnet-4-20250514", "high-quality", "local", "local/openai/my-llama"]
    shown = runner.invoke(app, ["prices", "--config", str(config), "--json", *names])
    assert shown.exit_code == 0, shown.output
    rows = {r["name"]: r for r in json.loads(shown.output)}
    simulated = runner.invoke(app, ["cost", "simulate", "--config", str(config), "--json",
                                    *(a for n in names for a in ("--strategy", f"{n}={n}"))])
    assert simulated.exit_code == 0, simulated.output
    simulator = json.loads(simulated.output)["prices"]
    for name in names:
        assert rows[name]["input_per_million"] == simulator[name]["input_per_million"], name
        assert rows[name]["source"] == simulator[name]["source"], name
    assert Decimal(rows["high-quality"]["output_per_million"]) == 12
    assert rows["claude-sonnet-4-20250514"]["source"] == "config"
    assert rows["local"]["source"] == "deployment"


@pytest.mark.parametrize("value", ["-1,-1", "1,-2", "3,15,-0.3", "nan,1", "1,inf"])
def test_simulate_refuses_a_negative_or_non_finite_price(value: str) -> None:
    result = runner.invoke(app, ["cost", "simulate", "--strategy", "x=my-local-llama",
                                 "--price", f"my-local-llama={value}"])
    assert result.exit_code == 2
    text = " ".join(result.output.replace("│", " ").split())
    assert "--price" in text and f"my-local-llama={value}" in text
    assert "-$" not in result.output


async def test_report_out_must_name_a_file_it_can_write(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _fill(db)
    folder = tmp_path / "reports"
    folder.mkdir()
    into_folder = runner.invoke(app, ["report", "--database", db, "--out", str(folder)])
    assert into_folder.exit_code == 2
    assert f"--out {folder} is a directory" in into_folder.output
    assert isinstance(into_folder.exception, SystemExit)  # an exit, not IsADirectoryError
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    under_file = runner.invoke(app, ["report", "--database", db,
                                     "--out", str(blocker / "sub" / "r.html")])
    assert under_file.exit_code == 2
    assert f"{blocker} is a file, not a directory" in under_file.output
    # A missing parent directory is made, and the output says where the page went.
    nested = tmp_path / "new" / "deeper" / "r.html"
    made = runner.invoke(app, ["report", "--database", db, "--out", str(nested)])
    assert made.exit_code == 0, made.output
    assert nested.read_text().startswith("<!DOCTYPE html>")
    assert f"report written to {nested}" in made.output


def _said(result: object) -> str:
    """The output with rich's box drawing and line breaks taken out."""
    return " ".join(getattr(result, "output", "").replace("│", " ").split())


@pytest.mark.parametrize("option", [["--requests", "5"], ["--input-tokens", "9"],
                                    ["--output-tokens", "7"]])
def test_from_ledger_refuses_the_profile_options(tmp_path: Path, option: list[str]) -> None:
    result = runner.invoke(app, ["cost", "simulate", "--from-ledger",
                                 "--database", str(tmp_path / "l.sqlite"), *option])
    assert result.exit_code == 2
    assert f"{option[0]} sets the traffic profile" in _said(result)
    assert "--from-ledger" in _said(result)


def test_simulate_refuses_a_database_without_from_ledger(tmp_path: Path) -> None:
    result = runner.invoke(app, ["cost", "simulate", "--database", str(tmp_path / "l.sqlite")])
    assert result.exit_code == 2
    assert "--database names the ledger for --from-ledger" in _said(result)


def test_simulate_refuses_two_strategies_of_one_name() -> None:
    result = runner.invoke(app, ["cost", "simulate", "--strategy", "a=claude-sonnet-4",
                                 "--strategy", "a=gemini-2.5-pro"])
    assert result.exit_code == 2
    assert "two strategies are named 'a'" in _said(result)


async def test_the_baseline_is_checked_in_both_modes(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _fill(db)
    for mode in ([], ["--from-ledger", "--database", db]):
        wrong = runner.invoke(app, ["cost", "simulate", *mode, "--baseline", "nope"])
        assert wrong.exit_code == 2, mode
        assert "baseline 'nope' is not one of the strategies" in _said(wrong)
        assert "all-opus" in _said(wrong)
    # A real strategy, but the replay compares each model with the recorded cost.
    named = runner.invoke(app, ["cost", "simulate", "--from-ledger", "--database", db,
                                "--baseline", "all-opus"])
    assert named.exit_code == 0, named.output
    assert "--baseline is not used with --from-ledger" in _said(named)


def test_a_replay_leaves_requests_of_unknown_cost_out_of_both_sides() -> None:
    price = ModelPrice.per_million(1, 2)
    priced = UsageRecord("g", "d", "openai", "m", input_tokens=1_000_000,
                         cached_input_tokens=0, output_tokens=0, cost_usd=Decimal(1))
    unknown = dataclasses.replace(priced, cost_usd=None, output_tokens=1_000_000)
    out = replay([priced, unknown, unknown], {"m": price})
    # Only the priced request on each side: its $1 recorded against its $1 on "m".
    assert (out.requests, out.unpriced, out.recorded_usd) == (3, 2, Decimal(1))
    assert out.single_model == {"m": Decimal(1)}


async def _fill_with_unpriced(db: str) -> None:
    """Ten Sonnet requests recorded at a config's $2.50/$12, and two of unknown cost."""
    await _recorded(db, [
        *(LedgerRow(request_id=f"p{i}", routed_group="high-quality", deployment="hq",
                    provider="anthropic", model="claude-sonnet-4-20250514", status="ok",
                    input_tokens=1_000, output_tokens=500, cost_usd=Decimal("0.0085"))
          for i in range(10)),
        *(LedgerRow(request_id=f"u{i}", routed_group="mystery", deployment="my",
                    provider="openai", model="mystery-model-x", status="ok",
                    input_tokens=100_000, output_tokens=50_000, cost_usd=None)
          for i in range(2))])


async def test_the_report_saving_is_like_for_like(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _fill_with_unpriced(db)
    config = tmp_path / "c.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: high-quality\n"
        "    litellm_params: {model: anthropic/claude-sonnet-4-20250514, api_key: x}\n"
        "prices:\n"
        "  claude-sonnet-4-20250514: {input_cost_per_million: 2.5, output_cost_per_million: 12}\n"
        f"ledger: {{database: '{db}'}}\n")
    result = runner.invoke(app, ["report", "--config", str(config),
                                 "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    # The unpriced requests' tokens are not in the comparison: ten requests both sides.
    assert "Everything on high-quality would have cost $0.085: routing saved $0.00 " \
        in result.output
    assert "2 requests with no known cost are left out of both figures" in result.output
    assert "genai-prices" not in result.output
    # Without the config the comparison is at genai-prices' $3/$15, and says so.
    alone = runner.invoke(app, ["report", "--database", db, "--out", str(tmp_path / "r.html")])
    assert alone.exit_code == 0, alone.output
    assert "priced at genai-prices' list prices" in _said(alone)
    assert "--config" in _said(alone)


async def test_a_ledger_replay_says_what_it_left_out(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _fill_with_unpriced(db)
    result = runner.invoke(app, ["cost", "simulate", "--from-ledger", "--database", db,
                                 "--strategy", "s=claude-sonnet-4",
                                 "--price", "claude-sonnet-4=2.5,12", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["requests"], data["unpriced"]) == (12, 2)
    assert Decimal(data["single_model_usd"]["claude-sonnet-4"]) == Decimal("0.085")
    text = runner.invoke(app, ["cost", "simulate", "--from-ledger", "--database", db,
                               "--strategy", "s=claude-sonnet-4",
                               "--price", "claude-sonnet-4=2.5,12"])
    assert "10 recorded requests cost $0.085 (2 more with unknown cost, left out of every figure" \
        in _said(text)
    assert "claude-sonnet-4: $2.50 in / $12.00 out per 1M [option]" in text.output


async def test_spend_shows_long_names_whole(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    names = ["high-quality/anthropic/claude-sonnet-4-20250514",
             "high-quality/anthropic/claude-opus-4-5-20251101", "b"]
    await _recorded(db, (LedgerRow(request_id=f"r{i}", deployment=name, status="ok",
                                   cost_usd=Decimal("0.01")) for i, name in enumerate(names)))
    result = runner.invoke(app, ["spend", "--database", db, "--by", "deployment"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in names:
        assert any(line.split()[0] == name for line in lines), name
    # The columns still line up: every row as wide as the header.
    table = [line for line in lines if line.split()[0] in {*names, "total"}]
    assert {len(line) for line in table} == {len(lines[0])}


async def test_spend_shows_a_line_with_no_known_cost_as_unpriced_not_zero(
        tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _recorded(db, [
        LedgerRow(request_id="a", model="my-unknown-model", status="ok", cost_usd=None),
        LedgerRow(request_id="b", model="gpt-4o", status="ok", cost_usd=Decimal("0.02")),
        LedgerRow(request_id="c", model="gpt-4o", status="ok", cost_usd=None)])
    result = runner.invoke(app, ["spend", "--database", db, "--by", "model"])
    assert result.exit_code == 0, result.output
    line = {row.split()[0]: row for row in result.output.splitlines()}
    assert "$0.00" not in line["my-unknown-model"]
    assert "unpriced  (1 unpriced)" in line["my-unknown-model"]
    # Partly priced: the known part, and how many rows it leaves out.
    assert "$0.02" in line["gpt-4o"] and "(1 unpriced)" in line["gpt-4o"]


async def test_report_headline_totals_what_spend_totals(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    row = {"routed_group": "high-quality", "deployment": "hq", "provider": "anthropic",
           "model": "claude-sonnet-4-20250514", "input_tokens": 1_000}
    await _recorded(db, [
        LedgerRow(request_id="ok", cost_usd=Decimal("1"), output_tokens=500, **row),
        # A stream that broke after its first byte: billed, so its cost is recorded.
        LedgerRow(request_id="broke", status="error", error_class="ConnectionFailed",
                  cost_usd=Decimal("0.5"), usage_estimated=True, stream=True, **row)])
    spend = json.loads(runner.invoke(app, ["spend", "--database", db, "--json"]).output)
    assert Decimal(spend["total_cost_usd"]) == Decimal("1.5")
    result = runner.invoke(app, ["report", "--database", db, "--out",
                                 str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    headline = result.output.splitlines()[0]
    assert headline.startswith("2 requests, $1.50 recorded")
    assert "$1.00 of it on successful requests, which the saving below compares" in headline


async def test_report_shows_rows_without_a_group_as_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    # As the gateway records an unknown model, and a request refused before routing.
    await _recorded(db, [
        LedgerRow(request_id="ok", routed_group="budget", deployment="b", cost_usd=Decimal(1)),
        LedgerRow(request_id="u", requested_model="gpt-5", status="error",
                  error_class="UnknownModel", cost_usd=Decimal(0)),
        LedgerRow(request_id="r", requested_model="x" * 128, status="error",
                  error_class="InvalidRequest", cost_usd=Decimal(0), attempts=0)])
    result = runner.invoke(app, ["report", "--database", db, "--out",
                                 str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert re.search(r"\(unknown or refused\) +2 requests", result.output)
    assert "gpt-5" not in result.output and "xxxx" not in result.output


def _call(request_id: str, status: str, cost: str | None, **kw: object) -> LedgerRow:
    """One row of a stream broken on `claude` (status `continued`) and answered on
    `gpt` (`ok`), or of a request of its own."""
    return LedgerRow(request_id=request_id, routed_group="g", deployment=kw.pop("d", "gpt"),
                     provider="openai", model="m", status=status, input_tokens=1_000_000,
                     cost_usd=None if cost is None else Decimal(cost), **kw)  # type: ignore[arg-type]


CONTINUED_LEDGER = [
    _call("paid-twice", "continued", "0.5", d="claude"), _call("paid-twice", "ok", "1"),
    _call("plain", "ok", "1"),
    # Left out of both sides: the request's own cost is unknown...
    _call("unknown", "continued", "0.25", d="claude"), _call("unknown", "ok", None),
    # ...or it failed after all (a failure is not replayed).
    _call("failed", "continued", "0.125", d="claude"), _call("failed", "error", "0"),
    # Its first call's cost unknown: said, not taken as $0.
    _call("half-known", "continued", None, d="claude"), _call("half-known", "ok", "1"),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def continued_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerReader]:
    """CONTINUED_LEDGER in SQLite and in PostgreSQL (fresh tables, dropped after)."""
    import asyncio
    import uuid

    from interlock.costs.schema import ledger_tables, make_engine

    url, prefix = str(tmp_path / "ledger.sqlite"), "interlock_"
    if request.param == "postgresql":
        url, prefix = request.getfixturevalue("postgres_url"), f"t_{uuid.uuid4().hex[:10]}_"
    ledger = Ledger(LedgerSettings(database=url, table_prefix=prefix, flush_interval=0.01))

    async def write() -> None:
        await ledger.start()
        for row in CONTINUED_LEDGER:
            ledger.record(row)
        assert await ledger.flush(5)
        await ledger.aclose()

    asyncio.run(write())
    try:
        with LedgerReader(url, table_prefix=prefix) as reader:
            yield reader
    finally:
        if request.param == "postgresql":
            engine = make_engine(url)
            ledger_tables(prefix).metadata.drop_all(engine)
            engine.dispose()


def test_a_replay_counts_a_continued_stream_once_and_its_first_call_as_paid(
        continued_ledger: LedgerReader) -> None:
    # Before, the replay read `ok` rows only: the first call, billed, was missing
    # from the recorded side, and routing looked $0.50 cheaper than it was.
    out = replay(continued_ledger.usage(), {"m": ModelPrice.per_million(1, 0)})
    assert (out.requests, out.unpriced) == (4, 1)
    assert out.recorded_usd == Decimal("3.5")  # 1 + 0.5, 1, 1 (+ an unknown first call)
    assert (out.continued_calls, out.continued_usd, out.continued_unpriced) == (
        1, Decimal("0.5"), 1)
    assert out.single_model == {"m": Decimal(3)}  # each priced request once, at $1
    assert out.by_group == {"g": 4}


def test_a_replay_without_continued_streams_pairs_nothing() -> None:
    records = [UsageRecord("g", "d", "openai", "m", 1_000_000, 0, 0, Decimal(1))]
    out = replay(records, {"m": ModelPrice.per_million(1, 0)})
    assert (out.requests, out.recorded_usd, out.continued_calls) == (1, Decimal(1), 0)


async def test_the_ledger_replay_says_what_continued_streams_cost(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.sqlite")
    await _recorded(db, CONTINUED_LEDGER)
    args = ["cost", "simulate", "--from-ledger", "--database", db, "--strategy", "s=m",
            "--price", "m=1,0"]
    data = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert (Decimal(data["recorded_usd"]), data["continued_calls"],
            Decimal(data["continued_usd"]), data["continued_unpriced"]) == (
        Decimal("3.5"), 1, Decimal("0.5"), 1)
    said = _said(runner.invoke(app, args))
    assert "3 recorded requests cost $3.50 (1 more with unknown cost" in said
    assert ("of which $0.50 on the first calls of 1 streams continued on another deployment"
            in said)
    assert "1 first calls of continued streams have unknown cost" in said
