"""Training data for learned routers: outcome tables and pairwise battles.

An outcome table has one row per prompt and one quality score in [0, 1] per
model (RouteLLM's CSV layout: `prompt`, then one boolean column per model).
Battles are Chatbot Arena rows: prompt, model_a, model_b, winner.

Readers accept CSV, JSONL and Parquet files, and directories of them (RouteLLM's
MMLU data is one CSV per subject). Parquet needs pyarrow, imported where used.

Imports: numpy, the standard library.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_DATA_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
_PROMPT_COLUMNS = ("prompt", "question", "text")
_TOKEN_SUFFIXES = {"input_tokens": "__input_tokens", "output_tokens": "__output_tokens"}
_TRUE = {"true", "t", "yes", "y"}
_FALSE = {"false", "f", "no", "n"}
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


# ---------------------------------------------------------------- file reading


def data_files(path: str | Path) -> list[Path]:
    """The data files a path names: itself, or a directory's data files sorted by name."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such data file or directory: {p}")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in _DATA_SUFFIXES)
    if not files:
        raise ValueError(f"{p} holds no .csv, .jsonl or .parquet files")
    return files


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of one CSV, JSONL/JSON or Parquet file as dictionaries."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # optional: only Parquet input needs it

        return list(pq.read_table(path).to_pylist())
    text = path.read_text(encoding="utf-8")
    if suffix == ".json" and text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


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


def _score_columns(records: list[dict[str, Any]], prompt_col: str) -> list[str]:
    """Columns whose every cell reads as a score, minus token-count columns."""
    columns = [c for c in records[0] if c != prompt_col]
    token_cols = {c for c in columns if c.endswith(tuple(_TOKEN_SUFFIXES.values()))}
    return [
        c for c in columns
        if c not in token_cols and all(_is_score_cell(r.get(c)) for r in records)
    ]


def _token_matrix(
    records: list[dict[str, Any]], models: Sequence[str], suffix: str
) -> np.ndarray | None:
    if not all(m + suffix in records[0] for m in models):
        return None
    return np.array([[_score(r[m + suffix]) for m in models] for r in records], dtype=np.float64)


def _table_from_records(
    records: list[dict[str, Any]], path: Path, models: Sequence[str] | None
) -> OutcomeTable:
    if not records:
        raise ValueError(f"{path}: no rows")
    prompt_col = _prompt_column(records[0].keys(), path)
    names = list(models) if models is not None else _score_columns(records, prompt_col)
    missing = [m for m in names if m not in records[0]]
    if missing:
        raise ValueError(f"{path}: no column for models {missing}")
    if not names:
        raise ValueError(f"{path}: no score columns besides {prompt_col!r}")
    scores = np.array([[_score(r[m]) for m in names] for r in records], dtype=np.float64)
    return OutcomeTable(
        prompts=[str(r[prompt_col]) for r in records],
        models=names,
        scores=scores,
        input_tokens=_token_matrix(records, names, _TOKEN_SUFFIXES["input_tokens"]),
        output_tokens=_token_matrix(records, names, _TOKEN_SUFFIXES["output_tokens"]),
        groups=[path.stem] * len(records),
    )


def _concat(tables: list[OutcomeTable]) -> OutcomeTable:
    models = tables[0].models
    for t in tables[1:]:
        if set(t.models) != set(models):
            raise ValueError(f"files disagree on the models: {models} vs {t.models}")
    tables = [t.select_models(models) for t in tables]

    def stack(attr: str) -> np.ndarray | None:
        parts = [getattr(t, attr) for t in tables]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    return OutcomeTable(
        prompts=[p for t in tables for p in t.prompts],
        models=list(models),
        scores=np.concatenate([t.scores for t in tables]),
        input_tokens=stack("input_tokens"),
        output_tokens=stack("output_tokens"),
        groups=[g for t in tables for g in (t.groups or [])],
    )


def _has_prompt_column(records: list[dict[str, Any]]) -> bool:
    return bool(records) and any(c in records[0] for c in _PROMPT_COLUMNS)


def load_outcomes(path: str | Path, *, models: Sequence[str] | None = None) -> OutcomeTable:
    """Read an outcome table from a file or a directory of files.

    In a directory, files without a prompt column (side files such as RouteLLM's
    contaminated_prompts.jsonl) are skipped. Rows with a missing score are
    dropped. Scores must lie in [0, 1].
    """
    tables = []
    for f in data_files(path):
        records = read_records(f)
        if Path(path).is_dir() and not _has_prompt_column(records):
            continue
        tables.append(_table_from_records(records, f, models))
    if not tables:
        raise ValueError(f"{path}: no file with a prompt column")
    table = tables[0] if len(tables) == 1 else _concat(tables)
    keep = ~np.isnan(table.scores).any(axis=1)
    if not keep.all():
        table = table.take(np.flatnonzero(keep))
    if table.scores.size and (table.scores.min() < 0.0 or table.scores.max() > 1.0):
        raise ValueError(f"{path}: scores must lie in [0, 1]; rescale them first")
    return table


# ---------------------------------------------------------------- battles


def _battle_prompt(record: dict[str, Any]) -> str:
    """The prompt of a battle row; Arena rows carry it as the first user turn."""
    for name in _PROMPT_COLUMNS:
        if name in record:
            return str(record[name])
    conversation = record.get("conversation_a")
    if isinstance(conversation, str):
        conversation = json.loads(conversation)
    if isinstance(conversation, list):
        for turn in conversation:
            if isinstance(turn, dict) and turn.get("role") == "user":
                return str(turn.get("content", ""))
    raise ValueError(f"battle row without a prompt: keys {sorted(record)}")


def _winner(value: Any) -> str:
    text = str(value).strip().lower()
    if text in ("model_a", "model_b"):
        return text
    if text in _TIES:
        return "tie"
    raise ValueError(f"winner must be model_a, model_b or tie; got {value!r}")


def load_battles(path: str | Path) -> Battles:
    """Read pairwise battles (Chatbot Arena layout) from a file or directory."""
    battles = Battles([], [], [], [])
    for f in data_files(path):
        for r in read_records(f):
            battles.prompts.append(_battle_prompt(r))
            battles.model_a.append(str(r["model_a"]))
            battles.model_b.append(str(r["model_b"]))
            battles.winner.append(_winner(r["winner"]))
    if not battles.prompts:
        raise ValueError(f"{path}: no battles")
    return battles


def load_training_data(path: str | Path, *, models: Sequence[str] | None = None) -> (
    OutcomeTable | Battles
):
    """Battles when the first file has model_a/model_b/winner columns, else outcomes."""
    first = read_records(data_files(path)[0])
    if first and {"model_a", "model_b", "winner"} <= set(first[0]):
        battles = load_battles(path)
        if models is not None:
            keep = [
                i for i in range(len(battles))
                if battles.model_a[i] in models and battles.model_b[i] in models
            ]
            battles = battles.take(keep)
        return battles
    return load_outcomes(path, models=models)


def data_hash(path: str | Path) -> str:
    """SHA-256 over the data files' names and bytes, for the artefact manifest."""
    digest = hashlib.sha256()
    for f in data_files(path):
        digest.update(f.name.encode())
        digest.update(b"\0")
        digest.update(f.read_bytes())
    return "sha256:" + digest.hexdigest()
