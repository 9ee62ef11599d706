"""How prompts are read from training data, the same way for train, eval and
calibrate: a battle's first turn (the 55k layout), empty prompts dropped and
counted, and a column that the first JSONL row leaves out still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interlock.cli.main import app
from interlock.routing import calibrate
from interlock.routing.data import Battles, load_outcomes, load_training_data

_55K_HEADER = ("id,model_a,model_b,prompt,response_a,response_b,winner_model_a,"
               "winner_model_b,winner_tie\n")


def _battle(prompt: object, winner: str = "model_a") -> str:
    return json.dumps({"prompt": prompt, "model_a": "x", "model_b": "y", "winner": winner})


def _write_55k_csv(path: Path, firsts: list[str]) -> Path:
    rows = []
    for i, first in enumerate(firsts):
        turns = json.dumps([first, "and then?"]).replace('"', '""')
        winner = ("1,0,0", "0,1,0", "0,0,1")[i % 3]
        rows.append(f'{i},x,y,"{turns}","[""a""]","[""b""]",{winner}\n')
    path.write_text(_55K_HEADER + "".join(rows), encoding="utf-8")
    return path


def test_battles_without_a_prompt_are_dropped_and_counted(tmp_path: Path) -> None:
    lines = [_battle("what is two plus two"), _battle(None), _battle("   "), _battle('[""]'),
             _battle('[null, "b"]'), _battle("[]"), _battle([]), _battle([None, "b"]),
             _battle("name a colour", "tie")]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    battles = load_training_data(tmp_path / "b.jsonl")
    assert isinstance(battles, Battles)
    assert battles.prompts == ["what is two plus two", "name a colour"]
    assert battles.winner == ["model_a", "tie"]
    assert battles.dropped == {"an empty prompt": 7}
    # Keeping some models keeps the count: it is what train prints.
    between = load_training_data(tmp_path / "b.jsonl", models=["x", "y"])
    assert between.dropped == {"an empty prompt": 7}


def test_train_says_how_many_battles_it_dropped(tmp_path: Path) -> None:
    lines = [_battle(f"question {i} about topic {i % 5}", ("model_a", "model_b")[i % 2])
             for i in range(30)] + [_battle(None), _battle("  ")]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["train", "sw_ranking", "--data", str(tmp_path / "b.jsonl"),
                                      "--out", str(tmp_path / "sw")])
    assert result.exit_code == 0, result.output
    assert "30 rows used, 2 dropped for an empty prompt" in result.output


def test_the_first_turn_is_stripped_and_a_real_list_is_turns(tmp_path: Path) -> None:
    _write_55k_csv(tmp_path / "55k.csv", ["  what is one plus one?  ", "\tsay hi\n"])
    assert load_training_data(tmp_path / "55k.csv").prompts == ["what is one plus one?",
                                                               "say hi"]
    # JSONL (and Parquet) hold the turns as a real list, not a JSON string.
    (tmp_path / "list.jsonl").write_text(_battle(["  first turn  ", "second"]) + "\n")
    assert load_training_data(tmp_path / "list.jsonl").prompts == ["first turn"]
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    rows = [{"prompt": ["  a parquet turn ", "next"], "model_a": "x", "model_b": "y",
             "winner_model_a": 0, "winner_model_b": 1, "winner_tie": 0}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "55k.parquet")
    assert load_training_data(tmp_path / "55k.parquet").prompts == ["a parquet turn"]
    # A list that is not turns (numbers) is the prompt's own text.
    (tmp_path / "nums.jsonl").write_text(_battle("[1, 2, 3]") + "\n")
    assert load_training_data(tmp_path / "nums.jsonl").prompts == ["[1, 2, 3]"]


def test_calibrate_reads_the_55k_file_as_train_does(tmp_path: Path) -> None:
    data = _write_55k_csv(tmp_path / "55k.csv",
                          [f"  question {i} on topic {i % 4}?  " for i in range(40)] + [" "])
    prompts, dropped = calibrate.load_prompts_counted(data)
    assert prompts == load_training_data(data).prompts
    assert prompts[0] == "question 0 on topic 0?" and len(prompts) == 40
    assert dropped == {"an empty prompt": 1}
    # A battles JSONL too, and empty prompts in a prompt file are left out, counted.
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"prompt": null}\n{"prompt": " "}\n')
    assert calibrate.load_prompts_counted(tmp_path / "p.jsonl") == (["a"], {"an empty prompt": 2})
    (tmp_path / "b.jsonl").write_text(_battle(["first", "second"]) + "\n")
    assert calibrate.load_prompts_counted(tmp_path / "b.jsonl") == (["first"], {})

    runner = CliRunner()
    out = tmp_path / "sw"
    trained = runner.invoke(app, ["train", "sw_ranking", "--data", str(data), "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["calibrate", str(out), "--prompts", str(data),
                                 "--strong-share", "0.5"])
    assert result.exit_code == 0, result.output
    assert "40 rows used, 1 dropped for an empty prompt" in result.output
    assert "of 40 prompts" in result.output


def test_a_model_the_first_jsonl_row_leaves_out_is_still_a_model(tmp_path: Path) -> None:
    rows = [{"prompt": "first", "a": 1}, {"prompt": "second", "a": 0, "b": 1},
            {"prompt": "third", "a": 1, "b": 0}]
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    table = load_outcomes(tmp_path / "o.jsonl")
    assert table.models == ["a", "b"]
    assert table.prompts == ["second", "third"]
    assert table.dropped == {"a missing score": 1}


def test_calibrate_reads_an_outcome_jsonl_as_train_does(tmp_path: Path) -> None:
    # Review: only battle JSONL went through train's reader; an outcome table in
    # JSONL was refused for a "question" column, for a row without a prompt,
    # though train reads both.
    question = tmp_path / "question.jsonl"
    question.write_text("\n".join(json.dumps({"question": f"q{i}", "a": i % 2, "b": 1})
                                  for i in range(6)) + "\n")
    assert calibrate.load_prompts_counted(question) == (
        load_training_data(question).prompts, {})
    missing = tmp_path / "missing.jsonl"
    missing.write_text("\n".join([json.dumps({"a": 1, "b": 0})] + [
        json.dumps({"prompt": f"p{i}", "a": i % 2, "b": 1}) for i in range(5)]) + "\n")
    assert calibrate.load_prompts_counted(missing) == (
        [f"p{i}" for i in range(5)], {"an empty prompt": 1})
    # A file of prompts alone keeps its strict reading.
    alone = tmp_path / "alone.jsonl"
    alone.write_text(json.dumps({"prompt": 42}) + "\n")
    with pytest.raises(ValueError, match="needs a 'prompt' string"):
        calibrate.load_prompts_counted(alone)


def test_a_parquet_binary_prompt_is_its_text(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": pa.array([b"bytes prompt", "caf\u00e9".encode()], pa.binary()),
                      "a": [1, 0], "b": [0, 1]})
    pq.write_table(table, tmp_path / "bytes.parquet")
    assert load_training_data(tmp_path / "bytes.parquet").prompts == ["bytes prompt", "caf\u00e9"]
