"""What the benchmarks record beside their figures: the machine, the versions, the date,
and the one section of docs/benchmarks.md that a benchmark rewrites.

Several benchmarks share docs/benchmarks.md; `replace_section` rewrites only the
`## <title>` section it is given (up to the next `## ` heading) and appends the
section when it is missing, so each benchmark leaves the others' sections alone.

Imports: the standard library.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def versions(names: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine(packages: list[str]) -> dict[str, Any]:
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        # Other work shares this machine; the load average says how much.
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "packages": versions(packages),
    }


def machine_lines(info: dict[str, Any]) -> list[str]:
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    return [
        f"- Date: {info['date_utc']}; commit {info.get('git_commit') or 'unknown'}",
        f"- Machine: {info['nproc']} CPUs ({info['cpu_model']}), "
        f"{info['memory_gib']} GiB RAM, {info['platform']}; 1-minute load average "
        f"{info.get('loadavg_1min')} at the start, {info.get('loadavg_1min_end', 'n/a')} at "
        "the end (other work shares the machine)",
        f"- Python {info['python']}; {pkgs}",
    ]


def replace_section(title: str, body: str, doc: Path = DOC) -> None:
    """Rewrite `## title` in the doc with `body` (which excludes the heading)."""
    heading = f"## {title}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    block = [heading, "", *body.strip("\n").splitlines(), ""]
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", *block]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        lines[start:end] = block
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines).rstrip("\n") + "\n")


def publish(result: dict[str, Any], out: Path | None, title: str,
            section: str | None) -> None:
    """Write `result` as JSON to `out` and `section` as the doc's `## title`,
    each when given, saying where."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    if section is not None:
        replace_section(title, section)
        print(f"updated {DOC} (section '{title}')")


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
