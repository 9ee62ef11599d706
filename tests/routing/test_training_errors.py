"""`interlock train` on data it cannot learn from, parameters it does not take, and
files with a problem: each is refused with exit 2 and a message saying where and
what, never a traceback or a silent "trained"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interlock.cli.main import app
from interlock.routing.data import load_outcomes, load_training_data
from interlock.routing.learned import make_router


def _outcomes(path: Path, n: int = 40, *, header: str = "prompt,strong-m,weak-m",
              row=lambda i: f"question {i} about topic {i % 7},1,{i % 2}") -> Path:
    path.write_text(header + "\n" + "\n".join(row(i) for i in range(n)) + "\n",
                    encoding="utf-8")
    return path


def _train(tmp_path: Path, data: Path, *extra: str, router: str = "mf"):
    return CliRunner().invoke(app, ["train", router, "--data", str(data),
                                    "--out", str(tmp_path / "out"), *extra])


def _refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_no_usable_rows_is_refused(tmp_path: Path) -> None:
    data = _outcomes(tmp_path / "d.csv", row=lambda i: f"q{i},1,")
    _refused(_train(tmp_path, data), "no usable rows", "weak-m")
    assert not (tmp_path / "out").exists()


def test_a_model_without_battles_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "b.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "model_a": "s", "model_b": "w",
                                        "winner": "model_a"}) + "\n" for i in range(20)))
    _refused(_train(tmp_path, data, "--models", "s,nope"), "nope")


def test_the_success_line_counts_rows_used_and_dropped(tmp_path: Path) -> None:
    data = _outcomes(tmp_path / "d.csv", row=lambda i: f"q{i} x,1,{'' if i < 3 else 1}")
    result = _train(tmp_path, data, "--param", "epochs=1")
    assert result.exit_code == 0, result.output
    assert "37 rows used, 3 dropped for a missing score" in result.output


def test_a_single_row_trains_with_a_warning(tmp_path: Path) -> None:
    result = _train(tmp_path, _outcomes(tmp_path / "d.csv", n=1), "--param", "epochs=1")
    assert result.exit_code == 0, result.output
    assert "warning: only 1 distinct prompt" in result.output


@pytest.mark.parametrize(("router", "param", "words"), [
    ("mf", "ranks=4", ["'ranks'", "did you mean rank?"]),
    ("mf", "rank=abc", ["rank", "'abc'", "an integer >= 1"]),
    ("mf", "rank=-3", ["rank", "-3"]),
    ("mf", "epochs=0", ["epochs", "an integer >= 1"]),
    ("mf", "lr=-1", ["lr", "a number > 0"]),
    ("classifier", "c=0", ["parameter c", "a number > 0"]),
    ("classifier", "c=-1", ["parameter c", "-1"]),
    ("knn", "k=0", ["parameter k", "an integer >= 1"]),
    ("knn", "k=2.5", ["parameter k", "2.5"]),
    ("sw_ranking", "gama=3", ["did you mean gamma?"]),
])
def test_router_parameters_are_checked(tmp_path: Path, router, param, words) -> None:
    result = _train(tmp_path, _outcomes(tmp_path / "d.csv"), "--param", param, router=router)
    _refused(result, *words)


@pytest.mark.parametrize(("param", "words"), [
    ("dim=abc", ["dim", "'abc'", "an integer >= 1"]),
    ("dim=0", ["dim", "an integer >= 1"]),
    ("dims=8", ["did you mean dim?"]),
])
def test_featuriser_parameters_are_checked(tmp_path: Path, param, words) -> None:
    data = _outcomes(tmp_path / "d.csv")
    _refused(_train(tmp_path, data, "--featurizer-param", param), *words)
    _refused(CliRunner().invoke(app, ["eval", "--data", str(data), "--routers", "mf",
                                      "--featurizer-param", param]), *words)


def test_make_router_checks_parameters_given_in_code() -> None:
    assert make_router("mf", rank=8, models=["a", "b"]).rank == 8
    with pytest.raises(ValueError, match=r"knn.*parameter k must be an integer >= 1, got nan"):
        make_router("knn", k=float("nan"))


def test_battle_rows_without_a_field_name_the_file_row_and_field(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "model_a": "s", "model_b": "w", "winner": "tie"},
            {"prompt": "b", "model_a": "s", "winner": "tie"}]
    data = tmp_path / "b.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _refused(_train(tmp_path, data), f"{data}, row 2 has no model_b")
    with pytest.raises(ValueError, match="row 1: winner must be model_a, model_b or tie"):
        data.write_text(json.dumps({**rows[0], "winner": "left"}) + "\n")
        load_training_data(data)


def test_a_directory_mixing_layouts_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "b.jsonl").write_text(
        json.dumps({"prompt": "a", "model_a": "s", "model_b": "w", "winner": "tie"}) + "\n")
    _outcomes(tmp_path / "mixed" / "t.csv")
    _refused(_train(tmp_path, tmp_path / "mixed"), "mixes layouts", "b.jsonl", "t.csv")


def test_a_byte_order_mark_in_a_csv_header_is_read(tmp_path: Path) -> None:
    data = tmp_path / "bom.csv"
    data.write_bytes("\ufeffprompt,strong-m,weak-m\nq1,1,0\nq2,0,1\n".encode())
    assert load_outcomes(data).models == ["strong-m", "weak-m"]


@pytest.mark.parametrize(("name", "content", "words"), [
    ("typo.csv", "prompt,strong-m,weak-m\nq1,1,0\nq2,abc,1\nq3,0,1\n",
     ["typo.csv, row 2, column 'strong-m'", "'abc' is not a score"]),
    ("id.csv", "id,prompt,strong-m,weak-m\n0,q1,1,0\n1,q2,0,1\n7,q3,1,1\n",
     ["row 3, column 'id'", "outside [0, 1]", "--models"]),
    ("bad.jsonl", '{"prompt": "q1", "a": 1, "b": 0}\n{prompt: 2}\n',
     ["bad.jsonl, line 2", "not valid JSON"]),
    ("prompts.txt", "q1\nq2\n", ["prompts.txt", ".txt", ".csv, .jsonl, .json, .parquet"]),
    ("latin1.csv", "prompt,a,b\ncaf\xe9,1,0\n", ["latin1.csv", "not UTF-8"]),
    # A cell over csv's 131,072-character limit, after a quoted two-line cell.
    ("long.csv", 'prompt,a,b\nq1,1,0\n"two\nlines",0,1\n"' + "x" * 140_000 + '",1,0\n',
     ["long.csv, line 5: not readable as CSV", "field limit", ".jsonl or .parquet"]),
])
def test_data_file_errors_say_where(tmp_path: Path, name, content, words) -> None:
    data = tmp_path / name
    data.write_bytes(content.encode("latin-1"))
    _refused(_train(tmp_path, data), *words)


@pytest.mark.parametrize(("name", "content", "words"), [
    # Were AttributeError or TypeError tracebacks.
    ("numbers.json", "[1, 2, 3]", ["numbers.json, record 1: a JSON number"]),
    ("lists.jsonl", '["q1", 1, 0]\n', ["lists.jsonl, record 1: a JSON array"]),
    ("strings.jsonl", '{"prompt": "q1", "a": 1, "b": 0}\n"q2"\n',
     ["strings.jsonl, record 2: a JSON string", "must be an object"]),
])
def test_records_that_are_not_objects_are_refused(tmp_path: Path, name, content,
                                                  words) -> None:
    data = tmp_path / name
    data.write_text(content)
    _refused(_train(tmp_path, data), *words)


def test_rows_without_a_prompt_or_a_score_key_are_dropped_and_counted(tmp_path: Path) -> None:
    # A key a JSONL row leaves out was a KeyError traceback; a null prompt was
    # learnt from as the text "None".
    rows = [{"prompt": f"question {i} about topic {i % 7}", "a": 1, "b": i % 2}
            for i in range(20)]
    rows += [{"prompt": None, "a": 1, "b": 0}, {"prompt": " ", "a": 1, "b": 0},
             {"a": 0, "b": 1}, {"prompt": "no b", "a": 1}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = load_outcomes(data)
    assert len(table) == 20 and "None" not in table.prompts
    assert table.dropped == {"a missing score": 1, "an empty prompt": 3}
    result = _train(tmp_path, data, "--param", "epochs=1")
    assert result.exit_code == 0, result.output
    assert "20 rows used, 1 dropped for a missing score, 3 dropped for an empty prompt" in (
        result.output)


def test_directory_files_disagreeing_on_models_are_named(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    _outcomes(tmp_path / "d" / "a.csv")
    _outcomes(tmp_path / "d" / "b.csv", header="prompt,strong-m,weak-m,mid-m",
              row=lambda i: f"q{i},1,0,1")
    _refused(_train(tmp_path, tmp_path / "d"), "a.csv has", "b.csv has")


def test_train_llm_says_it_learnt_nothing_from_the_prompts(tmp_path: Path) -> None:
    # The weak model's column comes first: the table must still rate it the weaker.
    data = _outcomes(tmp_path / "d.csv", header="prompt,weak-m,strong-m",
                     row=lambda i: f"q{i},{i % 2},1")
    result = _train(tmp_path, data, router="llm")
    assert result.exit_code == 0, result.output
    assert "saved an untrained llm" in result.output and "judge" in result.output
    from interlock.routing.learned import load_router

    router = load_router(tmp_path / "out")
    assert router.table[4, router.model_index("strong-m")] > router.table[
        4, router.model_index("weak-m")]


@pytest.mark.parametrize("out", ["data.csv", "data.csv/mf"])
def test_an_out_that_cannot_be_a_directory_is_refused_before_training(
        tmp_path: Path, out: str) -> None:
    data = _outcomes(tmp_path / "data.csv")
    before = data.read_bytes()
    result = CliRunner().invoke(app, ["train", "mf", "--data", str(data),
                                      "--out", str(tmp_path / out)])
    _refused(result, "--out", "name a directory")
    assert data.read_bytes() == before


def test_an_out_that_cannot_take_the_weights_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    data = _outcomes(tmp_path / "d.csv")
    (tmp_path / "out" / "weights.npz").mkdir(parents=True)  # was an IsADirectoryError
    _refused(_train(tmp_path, data, "--param", "epochs=1"),
             f"error: {tmp_path / 'out' / 'weights.npz'}: Is a directory",
             "pick another --out")
