"""Evaluation data: outcome tables from any layout the routers train on, plus MT-Bench.

`load_eval_data` reads RouteLLM CSV directories, CSV, JSONL and Parquet outcome
tables through `routing.data.load_outcomes`, and MT-Bench single-answer
judgements (`question_id`, `model`, `score`, `turn` per line) with their
question file (`question_id`, `turns`). An MT-Bench question is routed on its
first turn and scored by the mean of the chosen model's turn scores, rescaled
from the judge's 1-10 to [0, 1]. Judgements the judge failed to give (score
below 1, FastChat writes -1) are ignored; a question that lacks a score for a
model is dropped.

Imports: numpy, the standard library, `routing.data`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interlock.routing.data import OutcomeTable, data_files, load_outcomes, read_records

_JUDGEMENT_KEYS = {"question_id", "model", "score", "turn"}
_QUESTION_FILE_NAMES = ("question.jsonl", "questions.jsonl")
_JUDGE_MIN, _JUDGE_MAX = 1.0, 10.0


def is_judgement_file(path: str | Path) -> bool:
    """Whether a file's first record looks like an MT-Bench judgement."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".jsonl", ".json"):
        return False
    with p.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and set(first) >= _JUDGEMENT_KEYS
    return False


def _find_questions(judgements: Path) -> Path:
    for name in _QUESTION_FILE_NAMES:
        candidate = judgements.with_name(name)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{judgements} holds MT-Bench judgements; pass the question file with "
        f"--questions FILE (looked for {' or '.join(_QUESTION_FILE_NAMES)} beside it)"
    )


def _records(path: Path, keys: Sequence[str], what: str) -> list[dict[str, Any]]:
    """The file's records, each an object holding `keys`, else an error saying
    which record lacks what (not a bare KeyError naming the key alone)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such {what} file: {path}")
    records = read_records(path)
    for number, record in enumerate(records, start=1):
        missing = [k for k in keys if not isinstance(record, dict) or k not in record]
        if missing:
            raise ValueError(f"{path}, record {number}: an MT-Bench {what} needs "
                             f"{', '.join(keys)}; it lacks {', '.join(missing)}")
    return records


def _first_turns(questions: Path) -> dict[Any, str]:
    prompts: dict[Any, str] = {}
    for record in _records(questions, ("question_id", "turns"), "question"):
        turns = record.get("turns")
        if not isinstance(turns, list) or not turns:
            raise ValueError(f"{questions}: question {record.get('question_id')!r} has no turns")
        prompts[record["question_id"]] = str(turns[0])
    return prompts


def _judge_score(value: Any, judgements: Path, number: int) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{judgements}, record {number}: score {value!r} is not a number; "
                         "a judgement's score is the judge's 1-10 (below 1 when it "
                         "failed)") from None


def _turn_scores(judgements: Path) -> dict[tuple[Any, str], list[float]]:
    """Valid judge scores per (question, model), one per turn (later duplicates replace)."""
    by_turn: dict[tuple[Any, str, Any], float] = {}
    records = _records(judgements, ("question_id", "model", "score", "turn"), "judgement")
    for number, record in enumerate(records, start=1):
        score = _judge_score(record.get("score"), judgements, number)
        if score < _JUDGE_MIN:
            continue
        if score > _JUDGE_MAX:
            raise ValueError(f"{judgements}: judge score {score} is outside 1-10")
        by_turn[(record["question_id"], str(record["model"]), record["turn"])] = score
    scores: dict[tuple[Any, str], list[float]] = defaultdict(list)
    for (qid, model, _turn), score in by_turn.items():
        scores[(qid, model)].append(score)
    return scores


def load_mt_bench(
    judgements: str | Path,
    questions: str | Path | None = None,
    *,
    models: Sequence[str] | None = None,
) -> OutcomeTable:
    """MT-Bench judgements as an outcome table (one row per question, first turn as prompt)."""
    jpath = Path(judgements)
    qpath = Path(questions) if questions is not None else _find_questions(jpath)
    prompts = _first_turns(qpath)
    scores = _turn_scores(jpath)
    names = list(models) if models is not None else sorted({m for _, m in scores})
    if not names:
        raise ValueError(f"{jpath}: no valid judgements: every score is below 1, which "
                         "marks a judgement that failed")
    rows: list[str] = []
    values: list[list[float]] = []
    for qid, prompt in prompts.items():
        per_model = [scores.get((qid, m)) for m in names]
        if any(not s for s in per_model):
            continue
        rows.append(prompt)
        values.append([_rescale(float(np.mean(s))) for s in per_model if s])
    if not rows:
        raise ValueError(f"{jpath}: no question has a score for every model in {names}")
    return OutcomeTable(prompts=rows, models=names, scores=np.asarray(values, dtype=np.float64))


def _rescale(judge_score: float) -> float:
    return (judge_score - _JUDGE_MIN) / (_JUDGE_MAX - _JUDGE_MIN)


def load_eval_data(
    path: str | Path,
    *,
    models: Sequence[str] | None = None,
    questions: str | Path | None = None,
) -> OutcomeTable:
    """Outcome data for evaluation from a file or directory, whatever its layout."""
    p = Path(path)
    if questions is not None or is_judgement_file(p):
        return load_mt_bench(p, questions, models=models)
    data_files(p)  # a clear error for a missing path or an empty directory
    return load_outcomes(p, models=models)
