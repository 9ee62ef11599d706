"""A trained router's directory that is damaged (a copy cut short, a file lost or
edited by hand) is refused with RouterNotTrained naming the directory and the
command that remakes it. Before, the loader let through JSONDecodeError,
AttributeError or numpy's advice to unpickle the weights, and `interlock check`
and `serve` stopped with a traceback."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.trained_routers import knn_checkpoint
from typer.testing import CliRunner

from interlock.cli.main import app
from interlock.errors import RouterNotTrained
from interlock.routing.learned import load_router


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(text)


def _cut_weights(folder: Path) -> None:
    weights = folder / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:200])


DAMAGE: dict[str, Callable[[Path], None]] = {
    "manifest not JSON": _write("manifest.json", "{garbled"),
    "manifest a list": _write("manifest.json", "[]"),
    "weights not an archive": _write("weights.npz", "garbage"),
    "weights cut short": _cut_weights,
    "weights lost": lambda folder: (folder / "weights.npz").unlink(),
    "featuriser lost": lambda folder: shutil.rmtree(folder / "featurizer"),
}


@pytest.fixture
def damaged(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    folder = tmp_path / "models" / "knn"
    knn_checkpoint(folder)
    DAMAGE[request.param](folder)
    return folder


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_a_damaged_artefact_is_refused_saying_how_to_remake_it(damaged: Path) -> None:
    with pytest.raises(RouterNotTrained) as info:
        load_router(damaged, name="knn")
    message = str(info.value)
    assert f"router at {damaged} is damaged or incomplete" in message
    assert f"train it again: interlock train knn --data YOUR_OUTCOMES.csv --out {damaged}" in (
        message)
    assert "pickle" not in message  # numpy's advice, wrong for weights


@pytest.mark.parametrize("damaged", ["manifest a list", "weights not an archive"],
                         indirect=True)
def test_check_and_calibrate_say_so_without_a_traceback(damaged: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: s\n    litellm_params: {model: openai/gpt-4o, api_key: x}\n"
        "  - model_name: w\n    litellm_params: {model: openai/gpt-4o-mini, api_key: x}\n"
        "ledger: {database: null}\n"
        "routing:\n  strong_group: s\n  weak_group: w\n"
        f"  routers:\n    knn: {{type: learned, checkpoint_path: '{damaged}'}}\n")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nwrite a compiler\n")
    for args in (["check", "--config", str(config)],
                 ["calibrate", str(damaged), "--prompts", str(prompts), "--strong-share", "0.5"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "is damaged or incomplete" in result.output


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_an_artefact_of_another_format_version_is_refused_saying_so(
        tmp_path: Path, version: object) -> None:
    # A newer Interlock's layout, read as this one's, loaded on (the version was
    # written and never read) until some file did not match.
    import json

    folder = tmp_path / "models" / "knn"
    knn_checkpoint(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RouterNotTrained) as info:
        load_router(folder, name="knn")
    assert f"artefact format version {version!r}, and this Interlock reads versions 1 to 1" in (
        str(info.value))
    assert "interlock train knn" in str(info.value)
