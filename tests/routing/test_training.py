"""Data loaders for every layout, and `interlock train` end to end (seeded, reproducible)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from interlock.cli.main import app
from interlock.routing.data import (
    Battles,
    data_hash,
    load_battles,
    load_outcomes,
    load_training_data,
)
from interlock.routing.learned import load_router
from interlock.routing.training import parse_params

HEADER = ["prompt", "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]


def _write_csv(path, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)


def _planted_rows(n: int, seed: int) -> list[list[object]]:
    rng = np.random.default_rng(seed)
    words = [
        "apple",
        "river",
        "stone",
        "cloud",
        "music",
        "table",
        "garden",
        "window",
        "letter",
        "bridge",
    ]
    rows: list[list[object]] = []
    for i in range(n):
        hard = rng.random() < 0.4
        text = " ".join(rng.choice(words, 6)) + (" quantum" if hard else " plain") + f" {i}"
        rows.append([f"{text}\nA. x\nB. y\nAnswer:", (not hard) or rng.random() < 0.1, True])
    return rows


def test_routellm_csv_directory_is_read_as_it_is(tmp_path) -> None:
    _write_csv(tmp_path / "mmlu_a.csv", [["q1, with a comma\nA. 1", "True", "False"]])
    _write_csv(tmp_path / "mmlu_b.csv", [["q2", "False", "True"], ["q3", "True", "True"]])
    (tmp_path / "contaminated_prompts.jsonl").write_text('{"train_prompt": "x"}\n')
    t = load_outcomes(tmp_path)
    assert t.prompts == ["q1, with a comma\nA. 1", "q2", "q3"]
    assert t.models == HEADER[1:]
    assert t.scores.tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    assert t.groups == ["mmlu_a", "mmlu_b", "mmlu_b"]
    assert load_outcomes(tmp_path, models=[HEADER[2]]).scores.tolist() == [[0.0], [1.0], [1.0]]


def test_jsonl_and_parquet_outcomes_with_token_counts(tmp_path) -> None:
    rows = [
        {
            "prompt": "a",
            "m1": 0.25,
            "m2": 1,
            "m1__input_tokens": 10,
            "m2__input_tokens": 12,
            "note": "text",
        },
        {
            "prompt": "b",
            "m1": 0.5,
            "m2": None,
            "m1__input_tokens": 5,
            "m2__input_tokens": 6,
            "note": "text",
        },
    ]
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    t = load_outcomes(tmp_path / "o.jsonl")
    assert t.models == ["m1", "m2"]  # the text column and token columns are not models
    assert t.prompts == ["a"]  # the row with a missing score is dropped
    assert t.input_tokens is not None and t.input_tokens.tolist() == [[10.0, 12.0]]
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows[:1]), tmp_path / "o.parquet")
    assert load_outcomes(tmp_path / "o.parquet").scores.tolist() == [[0.25, 1.0]]


def test_scores_outside_the_unit_interval_are_refused(tmp_path) -> None:
    (tmp_path / "o.csv").write_text("prompt,m1\na,7\n")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_outcomes(tmp_path / "o.csv")


def test_battles_in_arena_layout(tmp_path) -> None:
    rows = [
        {
            "model_a": "x",
            "model_b": "y",
            "winner": "model_a",
            "conversation_a": [{"role": "user", "content": "hi there"}],
        },
        {"prompt": "p2", "model_a": "y", "model_b": "x", "winner": "tie (bothbad)"},
    ]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    b = load_battles(tmp_path / "b.jsonl")
    assert b.prompts == ["hi there", "p2"] and b.winner == ["model_a", "tie"]
    assert b.models == ["x", "y"]
    assert load_training_data(tmp_path / "b.jsonl").__class__.__name__ == "Battles"
    (tmp_path / "bad.jsonl").write_text(json.dumps({**rows[1], "winner": "nobody"}))
    with pytest.raises(ValueError, match="winner"):
        load_battles(tmp_path / "bad.jsonl")


def test_battles_in_the_55k_layout_with_one_hot_winners(tmp_path) -> None:
    # lmsys-arena-human-preference-55k, which RouteLLM trains on: prompts as JSON
    # lists of turns, the winner as three 0/1 columns; read as RouteLLM reads it.
    header = "id,model_a,model_b,prompt,response_a,response_b,winner_model_a," \
             "winner_model_b,winner_tie\n"
    rows = ['1,x,y,"[""first turn"", ""second turn""]","[""a""]","[""b""]",1,0,0\n',
            '2,y,x,"[""another question""]","[""a""]","[""b""]",0,1,0\n',
            '3,x,y,[not json],"[""a""]","[""b""]",0,0,1\n']
    (tmp_path / "55k.csv").write_text(header + "".join(rows))
    b = load_training_data(tmp_path / "55k.csv")
    assert isinstance(b, Battles)
    assert b.prompts == ["first turn", "another question", "[not json]"]
    assert b.winner == ["model_a", "model_b", "tie"]
    (tmp_path / "two.csv").write_text(header + rows[0].replace(",1,0,0", ",1,0,1"))
    with pytest.raises(ValueError, match=r"two.csv, row 1: exactly one of winner_model_a"):
        load_battles(tmp_path / "two.csv")


def test_data_hash_follows_the_content(tmp_path) -> None:
    _write_csv(tmp_path / "a.csv", [["q", "True", "True"]])
    first = data_hash(tmp_path / "a.csv")
    assert first == data_hash(tmp_path / "a.csv") and first.startswith("sha256:")
    _write_csv(tmp_path / "a.csv", [["q", "True", "False"]])
    assert data_hash(tmp_path / "a.csv") != first


def test_params_parse_numbers_and_text() -> None:
    assert parse_params(["k=40", "c=0.5", "name=abc", "table-x=[1,2]"]) == {
        "k": 40,
        "c": 0.5,
        "name": "abc",
        "table_x": [1, 2],
    }
    with pytest.raises(ValueError):
        parse_params(["k"])


def test_interlock_train_is_seeded_and_reproducible(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write_csv(data / "mmlu_x.csv", _planted_rows(200, 0))
    runner = CliRunner()
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = runner.invoke(
            app,
            [
                "train",
                "mf",
                "--data",
                str(data),
                "--out",
                str(out),
                "--seed",
                "3",
                "--param",
                "epochs=5",
                "--param",
                "rank=8",
            ],
        )
        assert result.exit_code == 0, result.output
        outs.append(out)
    for f in ("weights.npz", "featurizer/featurizer.npz", "manifest.json"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes()
    manifest = json.loads((outs[0] / "manifest.json").read_text())
    assert manifest["router"] == "mf" and manifest["seed"] == 3
    assert manifest["params"]["rank"] == 8 and manifest["featurizer"]["name"] == "hashed"
    assert manifest["data_hash"] == data_hash(data)
    router = load_router(outs[0])
    wp = router.win_prob(
        ["apple quantum 9\nAnswer:", "apple plain 9\nAnswer:"], HEADER[2], HEADER[1]
    )
    assert wp[0] > wp[1]


def test_interlock_train_reports_bad_input(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["train", "knn", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "no such data file" in result.output


def test_interlock_train_passes_featuriser_parameters(tmp_path) -> None:
    data = tmp_path / "data.csv"
    _write_csv(data, _planted_rows(120, 0))
    out = tmp_path / "knn"
    result = CliRunner().invoke(app, [
        "train", "knn", "--data", str(data), "--out", str(out),
        "--featurizer-param", "max_chars=null", "--featurizer-param", "dim=8"])
    assert result.exit_code == 0, result.output
    params = json.loads((out / "manifest.json").read_text())["featurizer"]["params"]
    assert params["max_chars"] is None and params["dim"] == 8
    bad = CliRunner().invoke(app, [
        "train", "knn", "--data", str(data), "--out", str(tmp_path / "bad"),
        "--featurizer-param", "dims=8"])
    assert bad.exit_code == 2 and "dims" in bad.output and "Traceback" not in bad.output
