"""Training data for learned routers: outcome tables and pairwise battles.

An outcome table has one row per prompt and one quality score in [0, 1] per
model (RouteLLM's CSV layout: `prompt`, then one boolean column per model).
Battles are Chatbot Arena rows: prompt, model_a, model_b, winner (or the 55k
set's three 0/1 winner columns).

Readers accept CSV, JSONL and Parquet files, and directories of them (RouteLLM's
MMLU data is one CSV per subject). Parquet needs pyarrow, imported where used.

Imports: numpy, the standard library, `routing.records`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interlock.routing.records import data_files, read_records

_PROMPT_COLUMNS = ("prompt", "question", "text")
_TOKEN_SUFFIXES = {"input_tokens": "__input_tokens", "output_tokens": "__output_tokens"}
_TRUE = {"true", "t", "yes", "y"}
_FALSE = {"false", "f", "no", "n"}
# Why a row without a prompt is dropped, as `dropped` counts it for every reader.
EMPTY_PROMPT = "an empty prompt"
_TIES = {"tie", "tie (bothbad)", "tie(bothbad)", "both_bad", "bothbad"}


@dataclass
class OutcomeTable:
    """Per-prompt quality of each model: `scores[i, j]` is model j on prompt i.

    `groups` (optional) names the source of each row, such as the CSV file it
    came from; evaluation may use it for reporting, routers never see it.
    """

    prompts: list[str]
    models: list[str]
    scores: np.ndarray
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None
    groups: list[str] | None = field(default=None)
    # Rows the loader left out, by reason ("a missing score": 3); not carried by take().
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.shape != (len(self.prompts), len(self.models)):
            raise ValueError(
                f"scores shape {self.scores.shape} does not match "
                f"{len(self.prompts)} prompts x {len(self.models)} models"
            )

    def __len__(self) -> int:
        return len(self.prompts)

    def take(self, index: Sequence[int] | np.ndarray) -> OutcomeTable:
        """The rows at `index`, in that order (for folds and splits)."""
        idx = np.asarray(index, dtype=np.int64)
        return OutcomeTable(
            prompts=[self.prompts[i] for i in idx],
            models=list(self.models),
            scores=self.scores[idx],
            input_tokens=None if self.input_tokens is None else self.input_tokens[idx],
            output_tokens=None if self.output_tokens is None else self.output_tokens[idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx],
        )

    def select_models(self, models: Sequence[str]) -> OutcomeTable:
        """The same rows with only `models`, in that order."""
        missing = [m for m in models if m not in self.models]
        if missing:
            raise ValueError(f"models not in the data: {missing}; the data has {self.models}")
        cols = [self.models.index(m) for m in models]
        return OutcomeTable(
            prompts=list(self.prompts),
            models=list(models),
            scores=self.scores[:, cols],
            input_tokens=None if self.input_tokens is None else self.input_tokens[:, cols],
            output_tokens=None if self.output_tokens is None else self.output_tokens[:, cols],
            groups=self.groups,
        )


@dataclass
class Battles:
    """Pairwise comparisons; `winner` is "model_a", "model_b" or "tie"."""

    prompts: list[str]
    model_a: list[str]
    model_b: list[str]
    winner: list[str]
    # Battles the loader left out, by reason; not carried by take().
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def models(self) -> list[str]:
        """Every model that appears, sorted, so the order is reproducible."""
        return sorted(set(self.model_a) | set(self.model_b))

    def take(self, index: Sequence[int] | np.ndarray) -> Battles:
        idx = [int(i) for i in index]
        return Battles(
            prompts=[self.prompts[i] for i in idx],
            model_a=[self.model_a[i] for i in idx],
            model_b=[self.model_b[i] for i in idx],
            winner=[self.winner[i] for i in idx],
        )


# ---------------------------------------------------------------- outcome tables


def _columns(records: list[dict[str, Any]]) -> list[str]:
    """Every key of every row, in first-seen order: a JSONL row may leave out a key
    (read as an empty cell), and the first row doing so must not lose the column."""
    return list(dict.fromkeys(c for r in records for c in r))


def _prompt_column(columns: Iterable[str], path: Path) -> str:
    cols = list(columns)
    for name in _PROMPT_COLUMNS:
        if name in cols:
            return name
    raise ValueError(f"{path}: no prompt column (looked for {_PROMPT_COLUMNS}); columns: {cols}")


def _score(value: Any) -> float:
    """A cell as a float score; booleans and their spellings become 1.0 / 0.0."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if value is None:
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    if text in ("", "nan", "none", "null"):
        return math.nan
    return float(text)


def _is_score_cell(value: Any) -> bool:
    try:
        _score(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _score_columns(records: list[dict[str, Any]], prompt_col: str, path: Path) -> list[str]:
    """Columns whose cells read as scores, minus token-count columns.

    A column with no score cell at all is text (a category, an answer) and is
    left out; one with some score cells and some others is a score column with
    a typo, which is reported rather than dropped, or the model would vanish
    from training without a word.
    """
    columns = [c for c in _columns(records) if c != prompt_col]
    token_cols = {c for c in columns if c.endswith(tuple(_TOKEN_SUFFIXES.values()))}
    kept = []
    for c in columns:
        if c in token_cols:
            continue
        bad = [i for i, r in enumerate(records) if not _is_score_cell(r.get(c))]
        if not bad:
            kept.append(c)
        elif len(bad) < sum(not _is_blank(r.get(c)) for r in records):
            raise _bad_cell(path, bad[0], c, records[bad[0]].get(c))
    return kept


def _bad_cell(path: Path, index: int, column: str, value: Any) -> ValueError:
    return ValueError(
        f"{path}, row {index + 1}, column {column!r}: {value!r} is not a score; "
        "write a number in [0, 1], true/false, or leave the cell empty to drop the row")


def _score_matrix(records: list[dict[str, Any]], names: Sequence[str], path: Path) -> np.ndarray:
    scores = np.empty((len(records), len(names)), dtype=np.float64)
    for i, r in enumerate(records):
        for j, m in enumerate(names):
            # A key a JSONL row leaves out is an empty cell: the row is dropped.
            try:
                scores[i, j] = _score(r.get(m))
            except (TypeError, ValueError):
                raise _bad_cell(path, i, m, r.get(m)) from None
    outside = (scores < 0.0) | (scores > 1.0)  # NaN compares false: empty cells pass
    if outside.any():
        i, j = (int(x[0]) for x in np.nonzero(outside))
        raise ValueError(
            f"{path}, row {i + 1}, column {names[j]!r}: {scores[i, j]:g} is outside [0, 1]; "
            "scores must lie in [0, 1]: rescale them, or, if this column is not a model's "
            "score, name the score columns with --models")
    return scores


def _token_matrix(
    records: list[dict[str, Any]], models: Sequence[str], suffix: str
) -> np.ndarray | None:
    columns = set(_columns(records))
    if not all(m + suffix in columns for m in models):
        return None
    return np.array([[_score(r.get(m + suffix)) for m in models] for r in records],
                    dtype=np.float64)


def _table_from_records(
    records: list[dict[str, Any]], path: Path, models: Sequence[str] | None
) -> OutcomeTable:
    if not records:
        raise ValueError(f"{path}: no rows")
    columns = _columns(records)
    prompt_col = _prompt_column(columns, path)
    names = list(models) if models is not None else _score_columns(records, prompt_col, path)
    missing = [m for m in names if m not in columns]
    if missing:
        raise ValueError(f"{path}: no column for models {missing}")
    if not names:
        raise ValueError(f"{path}: no score columns besides {prompt_col!r}")
    return OutcomeTable(
        prompts=[prompt_text(r.get(prompt_col)) for r in records],
        models=names,
        scores=_score_matrix(records, names, path),
        input_tokens=_token_matrix(records, names, _TOKEN_SUFFIXES["input_tokens"]),
        output_tokens=_token_matrix(records, names, _TOKEN_SUFFIXES["output_tokens"]),
        groups=[path.stem] * len(records),
    )


def _concat(tables: list[tuple[Path, OutcomeTable]]) -> OutcomeTable:
    first, models = tables[0][0], tables[0][1].models
    for path, t in tables[1:]:
        if set(t.models) != set(models):
            raise ValueError(f"files disagree on the models: {first.name} has {models}, "
                             f"{path.name} has {t.models}; give every file the same score "
                             "columns, or pick shared ones with --models")
    parts = [t.select_models(models) for _, t in tables]

    def stack(attr: str) -> np.ndarray | None:
        arrays = [getattr(t, attr) for t in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    return OutcomeTable(
        prompts=[p for t in parts for p in t.prompts],
        models=list(models),
        scores=np.concatenate([t.scores for t in parts]),
        input_tokens=stack("input_tokens"),
        output_tokens=stack("output_tokens"),
        groups=[g for t in parts for g in (t.groups or [])],
    )


def _has_prompt_column(records: list[dict[str, Any]]) -> bool:
    return bool(records) and any(c in _columns(records) for c in _PROMPT_COLUMNS)


def load_outcomes(path: str | Path, *, models: Sequence[str] | None = None) -> OutcomeTable:
    """Read an outcome table from a file or a directory of files.

    In a directory, files without a prompt column (side files such as RouteLLM's
    contaminated_prompts.jsonl) are skipped. Rows with a missing score are
    dropped and counted in `dropped`; none left is an error. Scores must lie in [0, 1].
    """
    return _outcomes_from(path, _read_all(path), models)


def _read_all(path: str | Path) -> list[tuple[Path, list[dict[str, Any]]]]:
    """Each data file of `path` with its rows, read once for whatever reads them."""
    return [(f, _objects(f, read_records(f))) for f in data_files(path)]


_JSON_KINDS = {str: "string", int: "number", float: "number", bool: "true/false",
               list: "array", type(None): "null"}


def _objects(path: Path, records: list[Any]) -> list[dict[str, Any]]:
    """The rows, each a JSON object; a list or a bare value (a JSON array of
    numbers, a line holding a list) has no columns to read."""
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            kind = _JSON_KINDS.get(type(record), type(record).__name__)
            raise ValueError(f"{path}, record {number}: a JSON {kind}, where "
                             "each record must be an object with a prompt and a score per "
                             'model (or a battle), such as {"prompt": "...", "gpt-4o": 1}')
    return records


def _outcomes_from(path: str | Path, files: list[tuple[Path, list[dict[str, Any]]]],
                   models: Sequence[str] | None) -> OutcomeTable:
    tables = []
    for f, records in files:
        if Path(path).is_dir() and not _has_prompt_column(records):
            continue
        tables.append((f, _table_from_records(records, f, models)))
    if not tables:
        raise ValueError(f"{path}: no file with a prompt column")
    return _usable_rows(path, tables[0][1] if len(tables) == 1 else _concat(tables))


def _usable_rows(path: str | Path, table: OutcomeTable) -> OutcomeTable:
    """The rows with a prompt and every score; the others dropped and counted by why.
    An empty prompt (a null in JSONL) was learnt from as the text "None" before."""
    incomplete = np.isnan(table.scores).any(axis=1)
    no_prompt = np.array([not p.strip() for p in table.prompts], dtype=bool) & ~incomplete
    if incomplete.all():
        empty = [m for j, m in enumerate(table.models) if np.isnan(table.scores[:, j]).any()]
        raise ValueError(
            f"{path}: no usable rows: each of its {len(table)} rows lacks a score for "
            f"{' or '.join(empty)}; fill those cells in, or leave such models out with --models")
    if (incomplete | no_prompt).all():
        raise ValueError(f"{path}: no usable rows: each of its {len(table)} rows has an empty "
                         "prompt or lacks a score")
    if not (incomplete | no_prompt).any():
        return table
    kept = table.take(np.flatnonzero(~(incomplete | no_prompt)))
    for why, rows in (("a missing score", incomplete), (EMPTY_PROMPT, no_prompt)):
        if rows.any():
            kept.dropped[why] = int(rows.sum())
    return kept


# ---------------------------------------------------------------- battles

_BATTLE_FIELDS = ("model_a", "model_b", "winner")


# lmsys-arena-human-preference-55k (RouteLLM's training battles) marks the
# winner with three 0/1 columns instead of `winner`.
_ONE_HOT_WINNERS = (("winner_model_a", "model_a"), ("winner_model_b", "model_b"),
                    ("winner_tie", "tie"))


def prompt_text(value: Any) -> str:
    """A prompt cell as text, "" when there is none (null, blank): the one reading
    of a prompt for training, evaluation and calibration, so that a row left out
    of one is left out of all, rather than learnt from as the text "None". A
    Parquet binary cell is its UTF-8 text, not the repr of its bytes."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return "" if _is_blank(value) else str(value)


def _turns_prompt(value: Any) -> str:
    """A battle's prompt; one given as a list of the user's turns (the 55k set's
    layout: a JSON string in CSV, a real list in JSONL or Parquet) is its first
    turn, stripped, as RouteLLM reads it; "" when that turn is empty or missing.
    A list holding anything but text and nulls is not turns but the prompt's text."""
    turns = value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            turns = json.loads(value)
        except json.JSONDecodeError:
            return prompt_text(value)
    if not isinstance(turns, list) or not all(t is None or isinstance(t, str) for t in turns):
        return prompt_text(value)
    return prompt_text(turns[0]).strip() if turns else ""


def _battle_prompt(record: dict[str, Any]) -> str | None:
    """The prompt of a battle row ("" for an empty one); None when the row has
    no prompt column. Arena rows carry it as the first user turn."""
    for name in _PROMPT_COLUMNS:
        if name in record:
            return _turns_prompt(record[name])
    conversation = record.get("conversation_a")
    if isinstance(conversation, str):
        conversation = json.loads(conversation)
    if isinstance(conversation, list):
        for turn in conversation:
            if isinstance(turn, dict) and turn.get("role") == "user":
                return prompt_text(turn.get("content"))
    return None


def _winner(value: Any) -> str | None:
    text = str(value).strip().lower()
    if text in ("model_a", "model_b"):
        return text
    return "tie" if text in _TIES else None


def _one_hot_winner(record: dict[str, Any], where: str) -> str | None:
    """The winner in the 55k layout; None when the row has none of its columns."""
    if not any(column in record for column, _ in _ONE_HOT_WINNERS):
        return None
    marked = [winner for column, winner in _ONE_HOT_WINNERS
              if str(record.get(column, "")).strip().lower() in ("1", "1.0", "true")]
    if len(marked) != 1:
        shown = {column: record.get(column) for column, _ in _ONE_HOT_WINNERS}
        raise ValueError(f"{where}: exactly one of winner_model_a, winner_model_b and "
                         f"winner_tie must be 1; got {shown}")
    return marked[0]


def _row_winner(record: dict[str, Any], where: str) -> str:
    if _is_blank(record.get("winner")):
        winner = _one_hot_winner(record, where)
        if winner is None:
            raise ValueError(f"{where} has no winner; each battle row needs a prompt (or "
                             "conversation_a), model_a, model_b and winner (or "
                             "winner_model_a, winner_model_b and winner_tie, as 0 or 1)")
        return winner
    winner = _winner(record["winner"])
    if winner is None:
        raise ValueError(f"{where}: winner must be model_a, model_b or tie; "
                         f"got {record['winner']!r}")
    return winner


def _battle_row(record: dict[str, Any], where: str) -> tuple[str, str, str, str]:
    """(prompt, model_a, model_b, winner) of one row; `where` names it in errors."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a battle row must be a JSON object, got "
                         f"{type(record).__name__}")
    for name in ("model_a", "model_b"):
        if _is_blank(record.get(name)):
            raise ValueError(f"{where} has no {name}; each battle row needs a prompt "
                             "(or conversation_a), model_a, model_b and winner")
    winner = _row_winner(record, where)
    prompt = _battle_prompt(record)
    if prompt is None:
        raise ValueError(f"{where} has no prompt (looked for {', '.join(_PROMPT_COLUMNS)} "
                         f"and conversation_a); its keys: {sorted(record)}")
    return prompt, str(record["model_a"]), str(record["model_b"]), winner


def load_battles(path: str | Path) -> Battles:
    """Read pairwise battles (Chatbot Arena layout) from a file or directory."""
    return _battles_from(path, _read_all(path))


def _battles_from(path: str | Path,
                  files: list[tuple[Path, list[dict[str, Any]]]]) -> Battles:
    battles = Battles([], [], [], [])
    empty = 0
    for f, records in files:
        for number, r in enumerate(records, start=1):
            prompt, a, b, winner = _battle_row(r, f"{f}, row {number}")
            if not prompt.strip():
                empty += 1
                continue
            battles.prompts.append(prompt)
            battles.model_a.append(a)
            battles.model_b.append(b)
            battles.winner.append(winner)
    if not battles.prompts:
        raise ValueError(f"{path}: no battles" + (
            f": each of its {empty} rows has an empty prompt" if empty else ""))
    if empty:
        battles.dropped[EMPTY_PROMPT] = empty
    return battles


def _layout(records: list[dict[str, Any]]) -> str | None:
    """"battles", "outcomes", or None for a side file (no prompt column)."""
    if records and any(f in _columns(records) for f in _BATTLE_FIELDS):
        return "battles"
    return "outcomes" if _has_prompt_column(records) else None


def _data_layout(path: str | Path, files: list[tuple[Path, list[dict[str, Any]]]]) -> str:
    """The one layout of a file or directory; a directory mixing two is an error,
    as the first file would otherwise decide how every other one is read."""
    found: dict[str, list[str]] = {}
    for f, records in files:
        layout = _layout(records)
        if layout is not None:
            found.setdefault(layout, []).append(f.name)
    if len(found) > 1:
        raise ValueError(
            f"{path} mixes layouts: battles in {', '.join(found['battles'])}, outcome tables "
            f"in {', '.join(found['outcomes'])}; keep one layout per directory")
    return next(iter(found), "outcomes")


def _battles_between(battles: Battles, models: Sequence[str]) -> Battles:
    """The battles both of whose models are in `models`; each named model must have one."""
    keep = [i for i in range(len(battles))
            if battles.model_a[i] in models and battles.model_b[i] in models]
    kept = battles.take(keep)
    absent = [m for m in models if m not in kept.models]
    if absent:
        raise ValueError(
            f"no battle between the --models involves {', '.join(absent)}; the data's models: "
            f"{', '.join(battles.models)}")
    kept.dropped.update(battles.dropped)
    if len(keep) < len(battles):
        kept.dropped["a model outside --models"] = len(battles) - len(keep)
    return kept


def load_training_data(path: str | Path, *, models: Sequence[str] | None = None) -> (
    OutcomeTable | Battles
):
    """Battles when the files have model_a/model_b/winner columns, else outcomes."""
    files = _read_all(path)  # once: the layout and the loading read the same rows
    if _data_layout(path, files) == "battles":
        battles = _battles_from(path, files)
        return battles if models is None else _battles_between(battles, models)
    return _outcomes_from(path, files, models)


def rows_summary(used: int, dropped: dict[str, int]) -> str:
    """"120 rows used, 3 dropped for a missing score": what a reader kept and why not."""
    parts = [f"{used:,} row{'s' * (used != 1)} used"]
    parts += [f"{n:,} dropped for {why}" for why, n in dropped.items()]
    return ", ".join(parts)


def load_prompt_column(path: str | Path) -> tuple[list[str], dict[str, int]]:
    """The prompts of training data (outcome table or battles), read as training
    reads them (a battle's first turn), scores unread; with the rows left out for
    an empty prompt counted, as `dropped` counts them."""
    files = _read_all(path)
    battles = _data_layout(path, files) == "battles"
    read: list[str] = []
    for f, records in files:
        if battles:
            for number, r in enumerate(records, start=1):
                prompt = _battle_prompt(r)
                if prompt is None:
                    raise ValueError(f"{f}, row {number} has no prompt (looked for "
                                     f"{', '.join(_PROMPT_COLUMNS)} and conversation_a)")
                read.append(prompt)
        elif _has_prompt_column(records) or not Path(path).is_dir():  # skip side files
            column = _prompt_column(_columns(records), f)
            read += [prompt_text(r.get(column)) for r in records]
    prompts = [p for p in read if p.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompts in it" + (
            f": each of its {len(read)} rows has an empty prompt" if read else ""))
    return prompts, ({EMPTY_PROMPT: len(read) - len(prompts)} if len(prompts) < len(read)
                     else {})


def data_hash(path: str | Path) -> str:
    """SHA-256 over the data files' names and bytes, for the artefact manifest."""
    digest = hashlib.sha256()
    for f in data_files(path):
        digest.update(f.name.encode())
        digest.update(b"\0")
        digest.update(f.read_bytes())
    return "sha256:" + digest.hexdigest()
