"""The `interlock` command's own errors: wrong arguments get one clear line, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from interlock.cli.main import app

runner = CliRunner()


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


def test_serve_binds_where_the_config_says_unless_told_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    config = tmp_path / "c.yaml"
    config.write_text("model_list:\n"
                      "  - model_name: a\n"
                      "    litellm_params: {model: openai/gpt-4o, api_key: x}\n"
                      "general_settings: {master_key: sk-test-0123456789, host: 127.0.0.2,\n"
                      "                   port: 4321, drain_timeout: 7}\n"
                      "ledger: {database: null}\n")
    assert runner.invoke(app, ["serve", "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["serve", "--config", str(config), "--host", "127.0.0.3",
                               "--port", "4555"]).exit_code == 0
    assert [(c["host"], c["port"], c["timeout_graceful_shutdown"]) for c in calls] == [
        ("127.0.0.2", 4321, 7.0), ("127.0.0.3", 4555, 7.0)]


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
