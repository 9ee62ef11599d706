"""Paths the commands are asked to write: where a path that may not exist yet
would be made.

Imports: the standard library.
"""

from __future__ import annotations

from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of its parents that exists: the folder a missing
    path would be made in, or the file that stands in its way."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
