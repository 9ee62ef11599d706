"""Relative paths in a config file are read from the file's folder, not from the
directory the process runs in: `interlock serve --config /etc/interlock/config.yaml`
started from elsewhere found no checkpoint the file named relatively. Configs
given as dicts keep the working directory; so does the ledger's SQLite path
(docs/costs.md says why)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.trained_routers import knn_checkpoint

from interlock.config import load_config
from interlock.errors import ConfigError, RouterNotTrained
from interlock.gateway import Gateway
from interlock.routing.embedding_featurizers import EmbeddingModelUnavailable
from interlock.routing.settings import IntentRouterSettings, LearnedRouterSettings

ENTRIES = ("model_list:\n"
           "  - model_name: s\n    litellm_params: {model: openai/gpt-4o, api_key: x}\n"
           "  - model_name: w\n    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
           "ledger: {database: null}\n")


def _routed(checkpoint: str) -> dict[str, object]:
    return {"strong_group": "s", "weak_group": "w",
            "routers": {"knn": {"type": "learned", "checkpoint_path": checkpoint}}}


def _file(folder: Path, checkpoint: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(ENTRIES + "routing:\n  strong_group: s\n  weak_group: w\n"
                    f"  routers:\n    knn: {{type: learned, checkpoint_path: '{checkpoint}'}}\n"
                    + extra)
    return path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: a folder apart from the config's."""
    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _checkpoint(config_path: Path) -> str:
    spec = load_config(config_path).routing.routers["knn"]
    assert isinstance(spec, LearnedRouterSettings)
    return spec.checkpoint_path


async def test_a_relative_checkpoint_is_read_from_the_config_file_s_folder(
        tmp_path: Path, elsewhere: Path) -> None:
    knn_checkpoint(tmp_path / "etc" / "models" / "knn")
    config = load_config(_file(tmp_path / "etc", "models/knn"))
    gateway = Gateway(config, environ={})
    try:
        assert gateway.routing.alias_routers() == ["knn", "random"]  # the router loaded
    finally:
        await gateway.aclose()
    assert _checkpoint(_file(tmp_path / "etc", "models/knn")) == str(
        tmp_path / "etc" / "models" / "knn")


def test_a_config_named_by_a_relative_path_still_gives_an_absolute_checkpoint(
        tmp_path: Path, elsewhere: Path) -> None:
    _file(elsewhere / "conf", "models/knn")
    assert _checkpoint(Path("conf/config.yaml")) == str(elsewhere / "conf" / "models" / "knn")


def test_absolute_and_home_paths_are_kept(tmp_path: Path, elsewhere: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = str(tmp_path / "models" / "knn")
    assert _checkpoint(_file(tmp_path / "etc", absolute)) == absolute
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _checkpoint(_file(tmp_path / "etc", "~/knn")) == str(tmp_path / "home" / "knn")


async def test_a_dict_config_keeps_the_working_directory(elsewhere: Path) -> None:
    knn_checkpoint(elsewhere / "models" / "knn")
    config = load_config({"model_list": [
        {"model_name": g, "litellm_params": {"model": m, "api_key": "x"}}
        for g, m in (("s", "openai/gpt-4o"), ("w", "openai/gpt-4o-mini"))],
        "ledger": {"database": None}, "routing": _routed("models/knn")})
    spec = config.routing.routers["knn"]
    assert isinstance(spec, LearnedRouterSettings) and spec.checkpoint_path == "models/knn"
    gateway = Gateway(config, environ={})
    await gateway.aclose()


def test_a_missing_checkpoint_names_the_field_and_the_path_it_was_read_as(
        tmp_path: Path, elsewhere: Path) -> None:
    # Trained in the working directory, as the old rule expected: not found now,
    # and the error says where it looked and why there.
    knn_checkpoint(elsewhere / "models" / "knn")
    config = load_config(_file(tmp_path / "etc", "models/knn"))
    with pytest.raises(RouterNotTrained) as info:
        Gateway(config, environ={})
    message = str(info.value)
    assert message.startswith("routing.routers.knn.checkpoint_path: no trained knn router at "
                              f"{tmp_path / 'etc' / 'models' / 'knn'} (missing manifest.json)")
    assert "the config file gives 'models/knn'" in message
    assert "read from the config file's folder, not the working directory" in message


def test_an_absolute_missing_checkpoint_names_the_field_only(tmp_path: Path) -> None:
    absolute = tmp_path / "nowhere"
    with pytest.raises(RouterNotTrained) as info:
        Gateway(load_config(_file(tmp_path / "etc", str(absolute))), environ={})
    assert str(info.value).startswith(
        f"routing.routers.knn.checkpoint_path: no trained knn router at {absolute} ")
    assert "config file gives" not in str(info.value)


def test_an_intent_router_s_model_path_is_read_from_the_file_s_folder(
        tmp_path: Path, elsewhere: Path) -> None:
    intents = ("    topics: {type: intents, featurizer: 'st:models/minilm', default: w,\n"
               "             intents: [{name: code, group: s, utterances: [write code]}]}\n")
    path = _file(tmp_path / "etc", str(tmp_path / "knn"), intents)
    spec = load_config(path).routing.routers["topics"]
    assert isinstance(spec, IntentRouterSettings)
    assert spec.featurizer == f"st:{tmp_path / 'etc' / 'models' / 'minilm'}"


def test_an_intent_router_s_missing_model_names_the_field_and_where_it_looked(
        tmp_path: Path, elsewhere: Path) -> None:
    # Before: a FileNotFoundError traceback from the featuriser, no field named.
    knn_checkpoint(tmp_path / "etc" / "knn")
    intents = ("    topics: {type: intents, featurizer: 'st:models/minilm', default: w,\n"
               "             intents: [{name: code, group: s, utterances: [write code]}]}\n")
    config = load_config(_file(tmp_path / "etc", "knn", intents))
    with pytest.raises(EmbeddingModelUnavailable) as info:
        Gateway(config, environ={})
    message = str(info.value)
    assert message.startswith("routing.routers.topics.featurizer: sentence-transformers model "
                              f"'{tmp_path / 'etc' / 'models' / 'minilm'}' is not available "
                              "locally")
    assert "the config file gives 'models/minilm'" in message
    assert isinstance(info.value, ConfigError)  # what serve and `interlock check` report


def _knn_on_a_missing_model(tmp_path: Path) -> Path:
    """A trained router whose manifest names a local model that is not there."""
    folder = tmp_path / "knn"
    knn_checkpoint(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["featurizer"] = {"name": "sentence-transformers", "dim": 4,
                              "params": {"model_path": str(tmp_path / "gone")}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_learned_router_trained_on_a_missing_local_model_names_it(tmp_path: Path) -> None:
    folder = _knn_on_a_missing_model(tmp_path)
    with pytest.raises(EmbeddingModelUnavailable) as info:
        Gateway(load_config(_file(tmp_path / "etc", str(folder))), environ={})
    assert str(info.value).startswith(
        f"routing.routers.knn.checkpoint_path: the router at {folder} was trained on embeddings "
        f"of a local model: sentence-transformers model '{tmp_path / 'gone'}' is not available")


def test_the_ledger_s_sqlite_path_stays_relative_to_the_working_directory(
        tmp_path: Path, elsewhere: Path) -> None:
    # Documented, not changed: an existing ledger would be left behind unseen.
    path = tmp_path / "etc" / "config.yaml"
    path.parent.mkdir()
    path.write_text(ENTRIES.replace("ledger: {database: null}", "ledger: {database: spend.db}"))
    assert load_config(path).ledger.database == "spend.db"


def test_calibrate_says_a_router_s_local_model_is_missing_without_a_traceback(
        tmp_path: Path) -> None:
    # calibrate caught FileNotFoundError, which the featuriser no longer raises.
    from typer.testing import CliRunner

    from interlock.cli.main import app

    folder = _knn_on_a_missing_model(tmp_path)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nwrite a compiler\n")
    result = CliRunner().invoke(app, ["calibrate", str(folder), "--prompts", str(prompts),
                                      "--strong-share", "0.5"])
    assert result.exit_code == 2, result.output
    assert f"error: sentence-transformers model '{tmp_path / 'gone'}' is not available" in (
        result.output)
