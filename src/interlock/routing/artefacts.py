"""Plain-file artefacts for learned routers: arrays in a byte-reproducible .npz,
manifests as sorted JSON.

`numpy.savez` stamps each zip entry with the current time, so two identical
trainings would differ on disk; `write_arrays` pins the timestamp and order so
the same seed gives byte-identical weights. The files still open with numpy.load.

Imports: numpy, the standard library.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ARTEFACT_FORMAT = "interlock-router"
ARTEFACT_VERSION = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write named arrays to an .npz whose bytes depend only on the arrays."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The named arrays; a ValueError naming the file when it is no .npz of plain
    arrays (numpy's own message suggests unpickling it, wrong advice for weights)."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("one bare array")
            return {k: data[k] for k in data.files}
    except (ValueError, EOFError, zipfile.BadZipFile):
        raise ValueError(f"{p} is not an .npz archive of arrays") from None


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest as a dict; a ValueError naming the file when it is not one (a
    copy cut short or edited by hand), rather than a bare JSONDecodeError."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p} holds a JSON {type(data).__name__}, not the object a "
                         "manifest is")
    return data
