"""Evaluation data loading: MT-Bench judgements with their questions, and outcome tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from interlock.evaluation.datasets import is_judgement_file, load_eval_data, load_mt_bench


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _mt_bench(tmp_path: Path) -> Path:
    _write_jsonl(tmp_path / "question.jsonl", [
        {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]},
        {"question_id": 82, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]},
        {"question_id": 83, "category": "math", "turns": ["Unjudged question", "..."]},
    ])
    rows = [
        {"question_id": 81, "model": "gpt-4", "score": 10, "turn": 1},
        {"question_id": 81, "model": "gpt-4", "score": 8, "turn": 2},
        {"question_id": 81, "model": "mixtral", "score": 4, "turn": 1},
        {"question_id": 81, "model": "mixtral", "score": 7, "turn": 2},
        {"question_id": 82, "model": "gpt-4", "score": 1, "turn": 1},
        {"question_id": 82, "model": "gpt-4", "score": 1, "turn": 2},
        {"question_id": 82, "model": "mixtral", "score": 10, "turn": 1},
        {"question_id": 82, "model": "mixtral", "score": -1, "turn": 2},  # judge failed
        {"question_id": 83, "model": "gpt-4", "score": 5, "turn": 1},
    ]
    return _write_jsonl(tmp_path / "judgements.jsonl", rows)


def test_mt_bench_routes_on_the_first_turn_and_averages_the_turns(tmp_path: Path) -> None:
    judgements = _mt_bench(tmp_path)
    assert is_judgement_file(judgements)
    table = load_eval_data(judgements)  # question.jsonl found beside it
    assert table.models == ["gpt-4", "mixtral"]
    assert table.prompts == ["Write a poem.", "What is 2+2?"]  # 83 lacks mixtral: dropped
    # (10+8)/2 = 9 -> 8/9; (4+7)/2 = 5.5 -> 4.5/9; 1 -> 0; only the valid 10 -> 1.
    np.testing.assert_allclose(table.scores, [[8 / 9, 4.5 / 9], [0.0, 1.0]])


def test_mt_bench_with_an_explicit_question_file_and_models(tmp_path: Path) -> None:
    judgements = _mt_bench(tmp_path)
    moved = (tmp_path / "q").with_suffix(".jsonl")
    (tmp_path / "question.jsonl").rename(moved)
    with pytest.raises(FileNotFoundError, match="question file"):
        load_mt_bench(judgements)
    table = load_mt_bench(judgements, moved, models=["gpt-4"])
    assert table.models == ["gpt-4"]
    assert len(table) == 3
    np.testing.assert_allclose(table.scores[:, 0], [8 / 9, 0.0, 4 / 9])


def test_outcome_csv_directory_reads_through_routing_data(tmp_path: Path) -> None:
    (tmp_path / "mmlu_a.csv").write_text(
        'prompt,weak,strong\n"Q1\nA. x",True,True\n"Q2",False,True\n', encoding="utf-8")
    (tmp_path / "mmlu_b.csv").write_text("prompt,weak,strong\nQ3,False,False\n", encoding="utf-8")
    _write_jsonl(tmp_path / "contaminated_prompts.jsonl", [{"eval_prompt": "Q9"}])
    table = load_eval_data(tmp_path)
    assert not is_judgement_file(tmp_path / "contaminated_prompts.jsonl")
    assert table.prompts == ["Q1\nA. x", "Q2", "Q3"]
    assert table.models == ["weak", "strong"]
    np.testing.assert_allclose(table.scores, [[1, 1], [0, 1], [0, 0]])


def test_missing_data_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such"):
        load_eval_data(tmp_path / "nope.csv")


@pytest.mark.parametrize(("score", "words"), [
    ("ten", "judgements.jsonl, record 1: score 'ten' is not a number"),  # was float()'s error
    (None, "record 1: score None is not a number"),  # was a TypeError
    (-1, "no valid judgements: every score is below 1"),
])
def test_bad_judgement_scores_name_the_file_and_line(tmp_path: Path, score, words) -> None:
    _mt_bench(tmp_path)
    _write_jsonl(tmp_path / "judgements.jsonl",
                 [{"question_id": 81, "model": "gpt-4", "score": score, "turn": 1}])
    with pytest.raises(ValueError) as info:
        load_mt_bench(tmp_path / "judgements.jsonl")
    assert words in str(info.value)


def test_a_missing_question_file_names_the_flag_that_gives_it(tmp_path: Path) -> None:
    judgements = _mt_bench(tmp_path)
    (tmp_path / "question.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="pass the question file with --questions FILE"):
        load_mt_bench(judgements)


@pytest.mark.parametrize(("judgement", "words"), [
    # Were "error: 'model'" (a bare KeyError) and an AttributeError traceback.
    ({"question_id": 81, "score": 5, "turn": 1}, "record 2: an MT-Bench judgement needs "
                                                 "question_id, model, score, turn; it lacks model"),
    ([81, "gpt-4", 5, 1], "record 2: an MT-Bench judgement needs"),
])
def test_a_judgement_without_its_fields_names_the_record(tmp_path: Path, judgement,
                                                         words) -> None:
    _mt_bench(tmp_path)
    _write_jsonl(tmp_path / "judgements.jsonl",
                 [{"question_id": 81, "model": "gpt-4", "score": 5, "turn": 1}, judgement])
    with pytest.raises(ValueError) as info:
        load_mt_bench(tmp_path / "judgements.jsonl")
    assert words in str(info.value)


def test_a_question_without_an_id_and_a_missing_question_file_are_named(tmp_path: Path) -> None:
    judgements = _mt_bench(tmp_path)
    _write_jsonl(tmp_path / "q.jsonl", [{"question_id": 81, "turns": ["hi"]}, {"turns": ["x"]}])
    with pytest.raises(ValueError, match=r"q\.jsonl, record 2: an MT-Bench question needs "
                                         r"question_id, turns; it lacks question_id"):
        load_mt_bench(judgements, tmp_path / "q.jsonl")
    with pytest.raises(FileNotFoundError, match=r"no such question file: .*nope\.jsonl"):
        load_mt_bench(judgements, tmp_path / "nope.jsonl")
