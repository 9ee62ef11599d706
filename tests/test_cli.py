"""The `interlock` command's own errors: wrong arguments get one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.trained_routers import knn_checkpoint
from typer.testing import CliRunner

from interlock.cli import serve as serve_command
from interlock.cli import uvicorn_run
from interlock.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _logging_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # `serve` configures this process' logging, which would outlive the test (and
    # keep Interlock's records from pytest's capture); the real thing is tested
    # in a process of its own below.
    from interlock.cli import serve_logging

    monkeypatch.setattr(serve_logging, "apply", lambda config: None)


def test_fake_upstream_on_a_taken_port_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["fake-upstream", "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "--port" in result.output
    assert not isinstance(result.exception, OSError)


def test_serve_with_a_bad_config_lists_the_problems(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model_list:\n"
                      "  - model_name: a\n"
                      "    litellm_params: {model: openai/gpt-4o, rmp: 3}\n")
    result = runner.invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "model_list[0].litellm_params.rmp: unknown key; did you mean 'rpm'?" in result.output
    assert "Traceback" not in result.output


def _serving_nothing(calls: list[dict[str, Any]]) -> Callable[..., None]:
    """In place of `uvicorn_run.serve_until_stopped`: says the start line, as
    the real one does once a Ctrl-C would stop the server, and keeps uvicorn's
    options instead of serving."""
    def run(app: Any, *, workers: int, say_started: Callable[[], None], **options: Any) -> None:
        say_started()
        calls.append({"workers": workers, **options})
    return run


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `serve` hands uvicorn, a call each; nothing is served."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn_run, "serve_until_stopped", _serving_nothing(calls))
    # The addresses these tests name need not be this machine's (::1, 127.0.0.2).
    monkeypatch.setattr(serve_command, "cannot_listen", lambda host, port: None)
    return calls


def test_serve_on_an_address_already_taken_says_so_before_any_start_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The start line said "serving" above uvicorn's bind error.
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn_run, "serve_until_stopped", _serving_nothing(calls))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--config", str(_one_group(tmp_path)),
                                     "--port", str(port)])
    assert result.exit_code == 3
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
    assert "choose another --port" in result.output
    assert "serving" not in result.output
    assert calls == []


def test_serve_s_advice_on_an_address_fits_why_it_cannot_listen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Every failure was told to stop what holds the port, a name unknown too.
    assert "Check --host" in (serve_command.cannot_listen("192.0.2.1", 4000) or "")

    def unknown(self: socket.socket, address: object) -> None:  # no resolver asked
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket.socket, "bind", unknown)
    assert "check --host" in (serve_command.cannot_listen("db-host", 4000) or "")


def _one_group(tmp_path: Path, general: str = "") -> Path:
    config = tmp_path / "c.yaml"
    config.write_text("model_list:\n"
                      "  - model_name: a\n"
                      "    litellm_params: {model: openai/gpt-4o, api_key: x}\n"
                      f"general_settings: {{master_key: sk-test-0123456789{general}}}\n"
                      "ledger: {database: null}\n")
    return config


def test_serve_binds_where_the_config_says_unless_told_otherwise(
        tmp_path: Path, served: list[dict[str, Any]]) -> None:
    calls = served
    config = _one_group(tmp_path, ", host: 127.0.0.2, port: 4321, drain_timeout: 7")
    assert runner.invoke(app, ["serve", "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["serve", "--config", str(config), "--host", "127.0.0.3",
                               "--port", "4555"]).exit_code == 0
    assert [(c["host"], c["port"], c["timeout_graceful_shutdown"]) for c in calls] == [
        ("127.0.0.2", 4321, 7.0), ("127.0.0.3", 4555, 7.0)]
    shown = runner.invoke(app, ["serve", "--config", str(config), "--host", "::1"]).output
    assert "Interlock: serving http://[::1]:4321/v1 for a (1 worker)" in shown


def test_serve_s_start_line_names_routed_groups_and_router_aliases(
        tmp_path: Path, served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    # Clients may ask for `smart` and router-knn-0.3 as well as the model groups;
    # the start line named the model groups only. Run from another folder, as a
    # service is: the relative checkpoint_path is the config file's.
    folder = tmp_path / "etc"
    knn_checkpoint(folder / "models" / "knn")
    config = _config(folder, (
        "model_list:\n"
        "  - model_name: s\n    litellm_params: {model: openai/gpt-4o, api_key: x}\n"
        "  - model_name: w\n    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
        "general_settings: {allow_unauthenticated: true}\n"
        "ledger: {database: null}\n"
        "routing:\n  strong_group: s\n  weak_group: w\n"
        "  routers:\n    knn: {type: learned, checkpoint_path: models/knn}\n"
        "  groups:\n    smart: {router: knn, strong: s, weak: w, threshold: 0.5}\n"))
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    result = runner.invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert ("serving http://127.0.0.1:4000/v1 for s, w, smart; routers "
            "router-knn-<threshold>, router-random-<threshold> (1 worker)") in result.output


def test_serve_gives_uvicorn_the_connection_limits_of_the_config(
        tmp_path: Path, served: list[dict[str, Any]]) -> None:
    import pickle

    from interlock.server.connection_limits import ConnectionLimits, LimitedHttpToolsProtocol
    from interlock.server.refusal_log import RefusalLog

    config = _one_group(tmp_path, ", max_request_header_bytes: 8192, request_header_timeout: 5,"
                                  " request_body_timeout: 7, request_body_total_timeout: 60,"
                                  " max_connections: 100")
    assert runner.invoke(app, ["serve", "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["serve", "--config", str(config), "--workers", "2"]).exit_code == 0
    for options in served:
        protocol = options["http"]
        assert protocol.func is LimitedHttpToolsProtocol
        assert protocol.keywords["limits"] == ConnectionLimits(8192, 5.0, 7.0, 60.0)
        assert options["limit_concurrency"] == 100
        # --workers N hands its options to the worker processes pickled.
        pickled = pickle.loads(pickle.dumps(protocol)).keywords
        assert pickled["limits"] == protocol.keywords["limits"]
        assert isinstance(pickled["refusals"], RefusalLog)


def test_serve_with_workers_says_which_limits_each_counts_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(uvicorn_run, "serve_until_stopped", _serving_nothing([]))
    config = tmp_path / "c.yaml"
    body = ("model_list:\n"
            "  - model_name: a\n"
            "    litellm_params: {model: openai/gpt-4o, api_key: x, rpm: 60,\n"
            "                     max_parallel_requests: 4}\n"
            "  - model_name: b\n"
            "    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
            "general_settings: {master_key: sk-test-0123456789, api_keys: [\n"
            "  {name: batch, key: sk-batch-0123456789, max_parallel_requests: 2}]}\n"
            "budgets: [{model_group: a, max_usd: 5}]\n"
            "ledger: {database: null}\n")
    config.write_text(body)

    def warnings(*args: str) -> str:
        caplog.clear()
        with caplog.at_level("WARNING", logger="interlock.cli.serve"):
            assert runner.invoke(app, ["serve", "--config", str(config), *args]).exit_code == 0
        return caplog.text

    alone = warnings("--workers", "3")
    assert ("max_parallel_requests is counted by each of the 3 workers, so up to 3 "
            "times the cap may run at once (a/openai/gpt-4o, client key batch)") in alone
    assert ("without router_settings.redis_url each of the 3 workers counts its own "
            "rpm/tpm windows and budgets: together they may allow up to 3 times a limit"
            ) in alone
    # One worker counts everything itself; with Redis the windows and budgets are shared.
    assert "workers" not in warnings()
    config.write_text(body + "router_settings: {redis_url: 'redis://127.0.0.1:6379/0'}\n")
    shared = warnings("--workers", "3")
    assert "run at once (a/openai/gpt-4o);" in shared  # a key's cap is shared
    assert "redis_url" not in shared


def _json_serve(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    config = tmp_path / "c.yaml"
    config.write_text("model_list:\n"
                      "  - model_name: a\n"
                      "    litellm_params: {model: openai/gpt-4o,\n"
                      "                     api_key: os.environ/NO_SUCH_KEY}\n"
                      "general_settings: {master_key: sk-test-0123456789}\n"
                      "ledger: {database: null}\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_KEY"}
    return subprocess.Popen(
        [sys.executable, "-m", "interlock.cli.main", "serve", "--config", str(config),
         "--port", str(port), "--log-format", "json"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def test_serve_logs_interlock_s_lines_as_json_when_asked(tmp_path: Path) -> None:
    # Interlock's own warnings used to reach stderr bare (no time, level or logger),
    # through Python's last-resort handler, and its info lines not at all.
    with socket.socket() as taken:  # serving fails at the bind, after loading has logged
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with _json_serve(tmp_path, port) as process:
            _, err = process.communicate(timeout=60)
    lines = [json.loads(line) for line in err.splitlines()]  # every line is JSON
    loaded = [r for r in lines if "NO_SUCH_KEY" in r["message"]]
    assert loaded and loaded[0]["level"] == "warning"
    assert loaded[0]["logger"].startswith("interlock.") and loaded[0]["time"].endswith("+00:00")
    [refused] = [r for r in lines if r["level"] == "error"]
    assert refused["logger"] == "interlock.cli.serve"
    assert refused["message"].startswith(f"cannot listen on 127.0.0.1:{port}: ")
    assert process.returncode == 3
    assert not [r for r in lines if r["message"].startswith("Interlock: serving")]


def test_serve_s_start_line_is_a_json_record_with_its_facts_as_fields(tmp_path: Path) -> None:
    # The start line, printed for text only, is a record of its own at the
    # default level (warning), its facts as fields.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with _json_serve(tmp_path, port) as process:
        assert process.stderr is not None
        # Blocking reads (a select on the pipe missed lines already in the
        # reader's buffer); a serve that never says its line is killed.
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        start = None
        try:
            for line in process.stderr:  # ends if serve ends before its start line
                if "Interlock: serving" in line:
                    start = json.loads(line)
                    break
        finally:
            watchdog.cancel()
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=60)
    assert start is not None
    assert start["message"] == f"Interlock: serving http://127.0.0.1:{port}/v1 for a (1 worker)"
    assert start["level"] == "info" and start["logger"] == "interlock.serving"
    assert (start["url"], start["workers"], start["groups"], start["names"],
            start["routers"]) == (f"http://127.0.0.1:{port}/v1", 1, ["a"], [], [])


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_access_log_keeps_no_key_sent_in_the_url(tmp_path: Path, log_format: str) -> None:
    """A key in the query string was written to the access log verbatim, even for
    the request it failed to authenticate (401)."""
    import os
    import signal
    import subprocess
    import sys

    import httpx
    from tests.server.gateways import free_port, wait_ready

    master = "sk-test-0123456789"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "interlock.cli.main", "serve", "--config",
         str(_one_group(tmp_path)), "--port", str(port), "--access-log", "--log-level", "info",
         "--log-format", log_format],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(url, proc)
        refused = httpx.post(url + "/v1/chat/completions?key=MASTERSECRET&x=1", json={})
        assert refused.status_code == 401
        httpx.get(url + f"/health/liveness?api_key={master}&token=TOKENSECRET&plain")
        httpx.get(url + "/v1/models/sk-abcdef0123456789xyz", headers={
            "authorization": f"Bearer {master}"})
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    logged = out + err
    assert "POST /v1/chat/completions?key=[redacted]&x=[redacted]" in logged
    assert "/health/liveness?api_key=[redacted]&token=[redacted]&[redacted]" in logged
    for secret in ("MASTERSECRET", master, "TOKENSECRET", "0123456789xyz"):
        assert secret not in logged


def test_serve_writes_an_access_log_only_when_asked(
        tmp_path: Path, served: list[dict[str, Any]],
        caplog: pytest.LogCaptureFixture) -> None:
    calls = served
    config = _one_group(tmp_path)
    with caplog.at_level("WARNING", logger="interlock.cli.serve"):
        for extra in ([], ["--access-log"], ["--access-log", "--log-level", "info"]):
            assert runner.invoke(app, ["serve", "--config", str(config), *extra]).exit_code == 0
    assert [c["access_log"] for c in calls] == [False, True, True]
    assert calls[2]["log_level"] == "info"
    # At the default level the lines would not show: said once, for the second run.
    assert caplog.text.count("add --log-level info to see them") == 1


def test_json_lines_add_a_record_s_fields_but_never_in_place_of_its_own() -> None:
    import json
    import logging

    from interlock.cli.serve_logging import FIELDS, JsonLines

    record = logging.LogRecord("interlock.serving", logging.INFO, __file__, 1, "serving %s",
                               ("here",), None)
    setattr(record, FIELDS, {"url": "http://h/v1", "message": "not this", "workers": 2})
    entry = json.loads(JsonLines().format(record))
    assert (entry["message"], entry["url"], entry["workers"]) == ("serving here", "http://h/v1", 2)


def test_serve_refuses_a_log_level_it_does_not_know(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model_list: []\n")
    result = runner.invoke(app, ["serve", "--config", str(config), "--log-level", "loud"])
    assert result.exit_code == 2
    assert "unknown log level 'loud'; use one of critical, error, warning" in result.output


def test_commands_that_draw_say_when_matplotlib_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import interlock.cli.eval as eval_cli
    import interlock.cli.report as report_cli

    for module in (eval_cli, report_cli):
        monkeypatch.setattr(module, "find_spec", lambda name: None)
    report = runner.invoke(app, ["report", "--database", str(tmp_path / "l.sqlite")])
    plot = runner.invoke(app, ["eval", "--data", str(tmp_path / "none.csv"),
                               "--plot", str(tmp_path / "p.png")])
    for result in (report, plot):
        assert result.exit_code == 2
        assert "pip install 'interlock[plots]'" in result.output


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_check_says_ready_for_a_config_serve_would_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("TEST_KEY_VAR", "sk-test-checkkey-0123456789")
    config = _config(tmp_path, (
        "model_list:\n"
        "  - model_name: chat\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/TEST_KEY_VAR,\n"
        "                     rpm: 60, max_parallel_requests: 4}\n"
        "general_settings: {master_key: sk-gw-0123456789}\n"
        "ledger: {database: 'postgresql+psycopg://app:hunter2pw@db.internal/spend'}\n"))
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "chat/openai/gpt-4o-mini  openai/gpt-4o-mini  ready  [rpm 60, " \
           "max_parallel_requests 4, window 128000 tokens (genai-prices " \
           "openai/gpt-4o-mini; pre-call checks off)]  $0.15 in / $0.60 out per 1M" \
           in result.output
    assert "auth: master key set" in result.output and "result: ready" in result.output
    # Neither the key nor the database password is shown.
    assert "checkkey" not in result.output and "hunter2pw" not in result.output
    assert "db.internal" in result.output
    budgeted = tmp_path / "budgeted.yaml"
    budgeted.write_text(config.read_text().replace(
        "ledger:", "budgets: [{model_group: chat, period: 12, max_usd: 5}]\nledger:"))
    assert "budget: model_group chat: $5 every 12 hours" in runner.invoke(
        app, ["check", "--config", str(budgeted)]).output
    report = json.loads(runner.invoke(app, ["check", "--config", str(config), "--json"]).output)
    assert report["deployments"][0]["max_parallel_requests"] == 4 and not report["to_look_at"]
    # The input limit the pre-call checks use, and that model data gave it.
    assert report["deployments"][0]["max_input_tokens"] == 128_000
    assert report["deployments"][0]["max_input_tokens_from"] == "genai-prices openai/gpt-4o-mini"
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text(config.read_text().replace(
        "general_settings: {master_key: sk-gw-0123456789}",
        "general_settings:\n  master_key: sk-gw-0123456789\n  api_keys:\n"
        "    - {name: batch, key: sk-batch-0123456789, rpm_limit: 1200, max_parallel_requests: 8}\n"
        "    - {name: web, key: sk-web-0123456789}"))
    output = runner.invoke(app, ["check", "--config", str(keyed)]).output
    assert "client keys: batch, web" in output
    assert "client key batch: rpm_limit 1,200, max_parallel_requests 8" in output
    assert "client key web" not in output and "sk-batch" not in output
    # A name holding a key (the master key, pasted among words) was printed whole.
    holding = tmp_path / "holding.yaml"
    holding.write_text(keyed.read_text().replace("{name: web,", "{name: ops sk-gw-0123456789,"))
    output = runner.invoke(app, ["check", "--config", str(holding)]).output
    assert "client keys: batch, (a name that looks like a key, not shown)" in output
    assert "sk-gw-0123456789" not in output
    worded = tmp_path / "worded.yaml"
    worded.write_text(keyed.read_text().replace("{name: web,", "{name: ops sk-proj-SECRET,"))
    output = runner.invoke(app, ["check", "--config", str(worded)]).output
    assert "client keys: batch, (a name that looks like a key, not shown)" in output
    assert "SECRET" not in output


def test_check_shows_where_the_pre_call_checks_skip_each_deployment(tmp_path: Path) -> None:
    # Before: a model table's window read "max_input_tokens 128000 (genai-prices
    # ...)", told apart from the config's by the source's text, though the
    # checks skip it only for an estimate a third over it (x 0.75 above it),
    # and a configured limit already below it (the margin).
    model = "{model: openai/gpt-4o, api_key: sk-t"
    config = _config(tmp_path, (
        f"model_list:\n  - {{model_name: chat, litellm_params: {model}}}}}\n"
        f"  - {{model_name: capped, litellm_params: {model}, max_input_tokens: 50000}}}}\n"
        "router_settings: {enable_pre_call_checks: true, pre_call_safety_margin: 0.1}\n"
        "general_settings: {allow_unauthenticated: true}\n"))
    output = runner.invoke(app, ["check", "--config", str(config)]).output
    # 128,000 / 0.75 = 170,666.7 (so 170,667 is skipped); 50,000 x (1 - 0.1) = 45,000.
    assert ("window 128000 tokens (genai-prices openai/gpt-4o; skipped only above "
            "~170,666 estimated)") in output
    assert "max_input_tokens 50000 (skipped above ~45,000 estimated)" in output
    report = json.loads(runner.invoke(app, ["check", "--config", str(config), "--json"]).output)
    shown = {d["group"]: (d["max_input_tokens_listed"], d["skipped_above_estimated_tokens"])
             for d in report["deployments"]}
    assert shown == {"chat": (True, 170_666), "capped": (False, 45_000)}
    # What check says is what the pre-call check does, at the boundary.
    from interlock.cli.spend import load_config_or_exit
    from interlock.dispatch.selection import fits
    from interlock.gateway import Gateway
    for d in Gateway(load_config_or_exit(config)).catalog.deployments():
        above = shown[d.group][1]
        assert fits(d, above, 0.1) and not fits(d, above + 1, 0.1), d.group


def test_check_says_an_openai_adapter_setting_on_claude_does_nothing(
        tmp_path: Path) -> None:
    config = _config(tmp_path, (
        "model_list:\n"
        "  - model_name: c\n"
        "    litellm_params: {model: anthropic/claude-sonnet-4-20250514, api_key: sk-ant-x,\n"
        "                     allowed_openai_params: [logprobs]}\n"
        "general_settings: {master_key: sk-gw-0123456789}\n"))
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert ("warning: model_list[0].litellm_params.allowed_openai_params "
            "(c/anthropic/claude-sonnet-4-20250514): ignored; it applies only to "
            "OpenAI-compatible deployments") in result.output, result.output


def test_check_lists_what_to_look_at_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_KEY_VAR", raising=False)
    config = _config(tmp_path, (
        "model_list:\n"
        "  - model_name: chat\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/MISSING_KEY_VAR}\n"
        "  - model_name: local\n"
        "    litellm_params: {model: openai/my-finetune-xyz, api_key: x,\n"
        "                     api_base: 'http://127.0.0.1:9/v1'}\n"
        "router_settings: {set_verbose: true}\n"
        "general_settings: {master_key: sk-gw-0123456789}\n"))
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "UNAVAILABLE" in result.output and "MISSING_KEY_VAR" in result.output
    assert "local/openai/my-finetune-xyz has no known price" in result.output
    assert "router_settings.set_verbose: accepted for LiteLLM compatibility" in result.output
    assert "result: serve would start" in result.output


def test_check_exits_2_where_serve_would_refuse_to_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTERLOCK_MASTER_KEY", raising=False)
    open_config = _config(tmp_path, (
        "model_list:\n"
        "  - model_name: chat\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
        "general_settings: {allow_unauthenticated: true}\n"))
    # Without a master key only a loopback bind is allowed, as serve decides.
    assert runner.invoke(app, ["check", "--config", str(open_config)]).exit_code == 0
    refused = runner.invoke(app, ["check", "--config", str(open_config), "--host", "0.0.0.0"])
    assert refused.exit_code == 2
    assert "only allowed on a loopback bind" in refused.output
    bad = _config(tmp_path, "model_list:\n  - model_name: a\n"
                            "    litellm_params: {model: openai/gpt-4o, rmp: 3}\n")
    result = runner.invoke(app, ["check", "--config", str(bad)])
    assert result.exit_code == 2 and "did you mean 'rpm'?" in result.output
    assert "Traceback" not in result.output


def _knn_router_config(tmp_path: Path, name: str) -> Path:
    """A config whose learned router `name` loads a small knn checkpoint."""
    knn_checkpoint(tmp_path / "knn")
    return _config(tmp_path, (
        "model_list:\n"
        "  - model_name: s\n    litellm_params: {model: openai/gpt-4o, api_key: x}\n"
        "  - model_name: w\n    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
        "general_settings: {allow_unauthenticated: true}\n"
        "routing:\n  strong_group: s\n  weak_group: w\n"
        f"  routers:\n    {name}: {{type: learned, checkpoint_path: {tmp_path / 'knn'}}}\n"))


def test_check_reports_a_router_of_another_kind_as_a_config_problem(tmp_path: Path) -> None:
    config = _knn_router_config(tmp_path, "mf")
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "holds a knn router, not mf" in result.output and "Traceback" not in result.output
    # The advice must not be to train over the knn router's directory.
    assert f"--out {tmp_path / 'knn'}" not in result.output and "NEW_DIR" in result.output


def test_check_connect_reaches_the_ledger_and_redis_or_says_why_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERLOCK_MASTER_KEY", "sk-gw-0123456789")
    entry = ("model_list:\n  - model_name: chat\n"
             "    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n")
    here = _config(tmp_path, entry + f"ledger: {{database: '{tmp_path / 'spend.sqlite'}'}}\n")
    result = runner.invoke(app, ["check", "--config", str(here), "--connect"])
    assert result.exit_code == 0, result.output
    assert f"ledger database {tmp_path / 'spend.sqlite'}: reached" in result.output
    assert not (tmp_path / "spend.sqlite").exists()  # checking creates nothing
    # A missing folder is one serve makes (the ledger's writer does): check says so.
    deeper = tmp_path / "new" / "dir" / "spend.sqlite"
    later = _config(tmp_path, entry + f"ledger: {{database: '{deeper}'}}\n")
    result = runner.invoke(app, ["check", "--config", str(later), "--connect"])
    assert result.exit_code == 0, result.output
    assert f"serve will create the folder {deeper.parent}" in result.output
    assert not (tmp_path / "new").exists()
    # Nothing listens on port 1: both are named unreachable, passwords left out.
    away = _config(tmp_path, entry + (
        "ledger: {database: 'postgresql+psycopg://app:hunter2pw@127.0.0.1:1/spend'}\n"
        "router_settings: {redis_url: 'redis://:redispw99@127.0.0.1:1/0'}\n"))
    result = runner.invoke(app, ["check", "--config", str(away), "--connect"])
    assert result.exit_code == 1, result.output
    assert result.output.count("UNREACHABLE") == 2
    assert "ledger database postgresql+psycopg://app:" in result.output
    assert "Redis redis://" in result.output and "is unreachable: ConnectionError" in result.output
    assert "hunter2pw" not in result.output and "redispw99" not in result.output
    # Without --connect nothing is reached, and the config alone is ready.
    assert runner.invoke(app, ["check", "--config", str(away)]).exit_code == 0


def test_keys_are_made_listed_and_revoked_from_the_command_line(tmp_path: Path) -> None:
    import asyncio
    import json

    from interlock.costs.settings import LedgerSettings
    from interlock.key_store import KEY_PREFIX, KeyStore

    database = tmp_path / "ledger.sqlite"
    config = _config(tmp_path, (
        "model_list:\n"
        "  - model_name: chat\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-x}\n"
        "general_settings:\n"
        "  master_key: sk-gw-0123456789\n"
        "  api_keys: [{name: web, key: sk-web-0123456789}]\n"
        f"ledger: {{database: '{database}'}}\n"))
    made = runner.invoke(app, ["keys", "generate", "batch", "--config", str(config),
                               "--models", "chat", "--rpm-limit", "600", "--duration", "30d"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[0]
    assert token.startswith(KEY_PREFIX)
    # What a gateway on the same ledger reads: the key, by its digest.
    store = KeyStore(LedgerSettings(database=str(database)))

    async def find() -> Any:
        await store.read()
        try:
            return store.find(token.encode())
        finally:
            await store.aclose()

    found = asyncio.run(find())
    assert found is not None and found.name == "batch" and found.rpm_limit == 600
    listed = runner.invoke(app, ["keys", "list", "--config", str(config)])
    assert f"batch  ...{token[-4:]}  models: chat  rpm_limit 600  expires" in listed.output
    assert token not in listed.output
    as_json = json.loads(runner.invoke(app, ["keys", "list", "--config", str(config),
                                             "--json"]).output)
    assert [k["name"] for k in as_json] == ["batch"]
    for argv, says in ((["generate", "batch"], "exists already"),
                       (["generate", "web"], "named 'web' exists already"),
                       (["generate", "x", "--models", "chta"], "'chta' is not a name"),
                       (["generate", "x", "--duration", "soon"], "duration: got 'soon'")):
        refused = runner.invoke(app, ["keys", *argv, "--config", str(config)])
        assert refused.exit_code == 2 and says in refused.output, refused.output
    gone = runner.invoke(app, ["keys", "delete", "batch", "nobody", "--config", str(config)])
    assert gone.exit_code == 1
    assert "deleted: batch" in gone.output and "'nobody'" in gone.output
    assert "no client keys made at run time" in runner.invoke(
        app, ["keys", "list", "--config", str(config)]).output


def _keys_config(tmp_path: Path,
                 general: str = "{master_key: sk-gw-0123456789}") -> Path:
    """A config with a master key (`general`: its general_settings) and a
    ledger, for `interlock keys`."""
    return _config(tmp_path, (
        "model_list:\n"
        "  - model_name: chat\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-x}\n"
        f"general_settings: {general}\n"
        f"ledger: {{database: '{tmp_path / 'ledger.sqlite'}'}}\n"))


def test_keys_delete_counts_names_not_found_and_never_repeats_one_that_may_be_a_key(
        tmp_path: Path) -> None:
    import asyncio

    from interlock.costs.settings import LedgerSettings
    from interlock.key_store import KeyStore

    # Keys whose values do not look like keys: only the config tells them.
    config = _keys_config(tmp_path, "{master_key: gw-master-0123456789, api_keys: "
                                    "[{name: web, key: web-client-0123456789}]}")
    token = runner.invoke(app, ["keys", "generate", "batch", "--config", str(config)]
                          ).stdout.strip()
    store = KeyStore(LedgerSettings(database=str(tmp_path / "ledger.sqlite")))

    async def old_style() -> None:  # a key named as keys were before the rule
        await store.read()
        try:
            await store.generate("sk-old-SECRET")
            await store.generate("ops sk-worded-SECRET")  # a key among words
        finally:
            await store.aclose()

    asyncio.run(old_style())
    secrets = ["gw-master-0123456789", "web-client-0123456789", "sk-never-made-SECRET"]
    pasted = [f"our {secrets[0]}", f" {secrets[1]}\n", f"team {secrets[2]}", token]
    gone = runner.invoke(app, ["keys", "delete", "sk-old-SECRET", "ops sk-worded-SECRET",
                               "nobody", *pasted, "--config", str(config)])
    assert gone.exit_code == 1
    assert ("deleted: (a name that looks like a key, not shown), "
            "(a name that looks like a key, not shown)") in gone.output
    assert ("5 of the 7 names given were not found among the keys made at run time: "
            "'nobody' and 4 more not shown, as each may be a key.") in gone.output
    assert f"`interlock keys list --config {config}` lists" in gone.output
    for secret in [*secrets, token, "SECRET"]:
        assert secret not in gone.output
    alone = runner.invoke(app, ["keys", "delete", secrets[0], "--config", str(config)])
    assert alone.exit_code == 1 and secrets[0] not in alone.output
    assert "has that name (not shown: it may be a key)" in alone.output


def test_a_key_named_as_interlock_names_its_own_is_refused_from_the_command_line(
        tmp_path: Path) -> None:
    from interlock.server.auth import key_id

    config = _keys_config(tmp_path)
    for name, says in ((key_id("sk-gw-0123456789"), "'key-' are kept for the ids"),
                       ("(none)", "in parentheses are kept"),
                       ("a\nb", "do not print")):
        refused = runner.invoke(app, ["keys", "generate", name, "--config", str(config)])
        assert refused.exit_code == 2 and says in refused.output, refused.output
    assert "no client keys made at run time" in runner.invoke(
        app, ["keys", "list", "--config", str(config)]).output


def test_a_key_given_no_models_from_the_command_line_may_ask_for_all(tmp_path: Path) -> None:
    import json

    config = _keys_config(tmp_path)
    made = runner.invoke(app, ["keys", "generate", "any", "--config", str(config),
                               "--models", ""])
    assert made.exit_code == 0, made.output
    listed = json.loads(runner.invoke(app, ["keys", "list", "--config", str(config),
                                            "--json"]).output)
    assert listed[0]["models"] is None


def test_the_help_on_a_key_s_parallel_cap_says_where_it_holds() -> None:
    # With Redis the cap holds across replicas and workers (docs/reliability.md).
    for command in ("generate", "update"):
        shown = runner.invoke(app, ["keys", command, "--help"], env={"COLUMNS": "200"}).output
        words = " ".join(shown.replace("│", " ").split())  # as read, not as wrapped
        assert ("--max-parallel-requests <int> Requests at once: over all gateways and "
                "workers when router_settings name Redis") in words, words


def test_the_help_of_keys_update_offers_each_switch_once() -> None:
    # typer made a negative twin of each: --no-no-expiry, --no-no-budget.
    shown = runner.invoke(app, ["keys", "update", "--help"], env={"COLUMNS": "200"}).output
    assert "--no-expiry" in shown and "--no-budget" in shown and "--all-models" in shown
    assert "--no-no-" not in shown and "--no-all-models" not in shown


def test_a_key_is_changed_from_the_command_line(tmp_path: Path) -> None:
    import json

    config = _keys_config(tmp_path)
    made = runner.invoke(app, ["keys", "generate", "batch", "--config", str(config),
                               "--models", "chat", "--duration", "1d"])
    assert made.exit_code == 0, made.output
    changed = runner.invoke(app, ["keys", "update", "batch", "--config", str(config),
                                  "--rpm-limit", "30", "--all-models", "--no-expiry"])
    assert changed.exit_code == 0, changed.output
    shown = json.loads(changed.stdout)
    assert (shown["rpm_limit"], shown["models"], shown["expires_at"]) == (30, None, None)
    kept = json.loads(runner.invoke(app, ["keys", "update", "batch", "--config", str(config),
                                          "--tpm-limit", "900"]).stdout)
    assert (kept["rpm_limit"], kept["tpm_limit"]) == (30, 900)  # what is not given stays
    missing = runner.invoke(app, ["keys", "update", "nobody", "--config", str(config),
                                  "--rpm-limit", "1"])
    assert missing.exit_code == 1 and "'nobody'" in missing.output
    wrong = runner.invoke(app, ["keys", "update", "batch", "--config", str(config),
                                "--models", "chta"])
    assert wrong.exit_code == 2 and "'chta' is not a name" in wrong.output


def test_a_key_s_budget_is_set_shown_and_taken_away_from_the_command_line(
        tmp_path: Path) -> None:
    import json

    config = _keys_config(tmp_path)
    made = runner.invoke(app, ["keys", "generate", "intern", "--config", str(config),
                               "--max-budget", "25", "--budget-period", "day"])
    assert made.exit_code == 0, made.output
    listed = runner.invoke(app, ["keys", "list", "--config", str(config)]).output
    assert "intern" in listed and "budget $25 a day" in listed
    hours = json.loads(runner.invoke(app, ["keys", "update", "intern", "--config", str(config),
                                           "--budget-period", "12"]).stdout)
    assert (hours["max_budget"], hours["budget_period"]) == ("25", 12.0)
    assert "budget $25 every 12 hours" in runner.invoke(
        app, ["keys", "list", "--config", str(config)]).output
    gone = json.loads(runner.invoke(app, ["keys", "update", "intern", "--config", str(config),
                                          "--no-budget"]).stdout)
    assert gone["max_budget"] is None
    refused = runner.invoke(app, ["keys", "generate", "x", "--config", str(config),
                                  "--budget-period", "day"])
    assert refused.exit_code == 2 and "give max_budget" in refused.output


def test_check_lists_the_router_names_clients_may_ask_for(tmp_path: Path) -> None:
    config = _knn_router_config(tmp_path, "knn")
    result = runner.invoke(app, ["check", "--config", str(config)])
    asked = next(line for line in result.output.splitlines()
                 if line.startswith("clients may ask for:"))
    # The groups and, as the gateway takes them, the learned router at any threshold.
    assert "s, w" in asked and "router-knn-<threshold>" in asked, asked


def test_check_and_serve_report_a_bad_rule_regex_as_a_config_error(
        tmp_path: Path, served: list[dict[str, Any]]) -> None:
    config = _config(tmp_path, (
        "model_list:\n"
        "  - model_name: chat\n    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
        "general_settings: {allow_unauthenticated: true}\n"
        "routing:\n  routers:\n    tiers: {type: rules, default: chat, rules:\n"
        "      [{name: x, group: chat, when: {regex: ['ok', '(unclosed']}}]}\n"
        "  groups: {auto: {router: tiers}}\n"))
    for command in ("check", "serve"):
        result = runner.invoke(app, [command, "--config", str(config)])
        assert result.exit_code == 2, (command, result.output)
        assert "routing.routers.tiers.rules[0].when.regex[1]: got '(unclosed'" in result.output
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, ValueError)
    assert served == []  # serve stopped before listening


@pytest.mark.parametrize(("redis_url", "says"), [
    ("http://127.0.0.1:6379/7", "router_settings.redis_url: got a http:// URL"),
    ("redis://:hunter2@127.0.0.1:abc/7", "router_settings.redis_url: the port is not a number"),
])
def test_check_and_serve_refuse_a_redis_url_redis_cannot_use(
        tmp_path: Path, served: list[dict[str, Any]], redis_url: str, says: str) -> None:
    config = _config(tmp_path, (
        "model_list:\n"
        "  - model_name: chat\n    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
        "general_settings: {master_key: sk-gw-0123456789}\n"
        f"router_settings: {{redis_url: '{redis_url}'}}\n"))
    for command in ("check", "serve"):
        result = runner.invoke(app, [command, "--config", str(config)])
        assert result.exit_code == 2, (command, result.output)
        assert says in result.output and "(line 5)" in result.output
        assert "Traceback" not in result.output and "hunter2" not in result.output
        assert not isinstance(result.exception, ValueError)
    assert served == []


def test_check_names_budgets_that_cannot_be_enforced(tmp_path: Path) -> None:
    import json

    entries = ("model_list:\n"
               "  - model_name: chat\n"
               "    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
               "general_settings: {master_key: sk-gw-0123456789}\n"
               "ledger: {database: null}\n")
    fine = _config(tmp_path, entries + "budgets:\n  - {model_group: chat, max_usd: 5}\n"
                                       "  - {end_user: '*', period: day, max_usd: 1}\n")
    result = runner.invoke(app, ["check", "--config", str(fine)])
    assert result.exit_code == 0 and "result: ready" in result.output, result.output
    unpriced = ("  - model_name: local\n"
                "    litellm_params: {model: openai/my-finetune, api_key: x,\n"
                "                     api_base: 'http://127.0.0.1:9/v1'}\n")
    config = _config(tmp_path, entries.replace("general_settings", unpriced + "general_settings")
                     + "budgets:\n"
                       "  - {model_group: local, period: day, max_usd: 1}\n"
                       "  - {provider: anthropic, max_usd: 10}\n"
                       "  - {model_group: chat, max_usd: 5}\n"
                       "  - {end_user: '*', period: day, max_usd: 1}\n")
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert ("budgets[0] (model_group local, $1 a day) cannot be enforced: no deployment it "
            "covers has a known price (local/openai/my-finetune), so its calls cost 'unknown' "
            "and the budget never moves") in result.output
    assert ("budgets[1] (provider anthropic, $10 a month) matches no call: no deployment in "
            "model_list is of provider anthropic") in result.output
    assert ("budgets[3] (end_user *, $1 a day) does not count calls to "
            "local/openai/my-finetune: its price is unknown") in result.output
    assert "budgets[2]" not in result.output
    report = json.loads(runner.invoke(app, ["check", "--config", str(config), "--json"]).output)
    assert sum(item.startswith("budgets[") for item in report["to_look_at"]) == 3
