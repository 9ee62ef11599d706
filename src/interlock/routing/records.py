"""Reading data files as rows of dictionaries: CSV, JSONL, JSON arrays, Parquet.

Every error names the file and, where there is one, the line, because these
files come from users' spreadsheets and scripts: "Expecting value: line 1"
without a file name sends them searching. CSVs are read with `utf-8-sig` so a
header saved by Excel (with a byte-order mark) reads as plain text.

Imports: the standard library (pyarrow where Parquet is read).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

DATA_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


def _accepted() -> str:
    return ", ".join(DATA_SUFFIXES)


def data_files(path: str | Path) -> list[Path]:
    """The data files a path names: itself, or a directory's data files sorted by name."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such data file or directory: {p}")
    if p.is_file():
        if p.suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"{p}: a {p.suffix or 'suffix-less'} file is not a data layout "
                             f"this reads; give a {_accepted()} file, or a directory of them")
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in DATA_SUFFIXES)
    if not files:
        raise ValueError(f"{p} holds no {_accepted()} files")
    return files


def _json_lines(path: Path, text: str) -> list[Any]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg} at column "
                             f"{exc.colno}); each line must be one JSON object") from None
    return rows


def _json_array(path: Path, text: str) -> list[Any]:
    try:
        return list(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg} at column "
                         f"{exc.colno})") from None


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            return list(reader)
        except csv.Error as exc:
            # csv's limit on a cell is process-wide; raising it here would change it
            # for every other reader in the process, so long prompts go elsewhere.
            hint = ("; keep prompts this long in a .jsonl or .parquet file"
                    if "field limit" in str(exc) else "")
            # line_num counts the lines read before the row that failed.
            raise ValueError(f"{path}, line {reader.line_num + 1}: not readable as CSV "
                             f"({exc}){hint}") from None


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of one CSV, JSONL/JSON or Parquet file as dictionaries."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # optional: only Parquet input needs it

        return list(pq.read_table(path).to_pylist())
    try:
        if suffix == ".csv":
            return _csv_rows(path)
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#x} at offset "
                         f"{exc.start}); save it as UTF-8 and try again") from None
    if suffix == ".json" and text.lstrip().startswith("["):
        return _json_array(path, text)
    return _json_lines(path, text)
