"""The SQLite ledger's writer thread against a busy event loop.

    .venv/bin/python benchmarks/ledger_writer.py [--rows 5000] [--no-doc]

Under load the gateway's event loop holds the GIL nearly all the time, and the
ledger's writer runs in a thread beside it. What matters is not the writer's
own speed but what it costs the loop, and whether it keeps up. This stands a
thread spinning a counter in for the loop (`interlock serve`'s 0.5 ms switch
interval set, as there), records `--rows` rows as the gateway does, then lets a
writer thread drain them with the ledger's own `_take`/`_write`, and reports:

- the caller's time per `record()` (the request path's share);
- the writer's rows per second while the loop spins (can it keep up?);
- the loop's time lost per row: how much the counter slowed while the writer
  ran, against its rate alone.

Timings, so they move with the machine's load: the writer's rate is steady
from run to run, the loop's loss (a difference of two rates) much less so.
A benchmark, not a test. Imports: the standard library,
benchmarks/benchdoc.py, and interlock.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import benchdoc
from interlock.costs.ledger import Ledger, LedgerRow
from interlock.costs.settings import LedgerSettings

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ledger_writer.json"
SWITCH_INTERVAL = 0.0005  # what `interlock serve` sets


def _row(n: int) -> LedgerRow:
    return LedgerRow(request_id=f"chatcmpl-{n:032x}", requested_model="bench",
                     routed_group="bench", router="direct", deployment="bench/openai/model",
                     provider="openai", model="model", input_tokens=120, output_tokens=40,
                     cost_usd=Decimal("0.000031"), latency_ms=1.25)


class _Spinner:
    """A thread that counts as fast as the GIL lets it: the event loop's stand-in."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        n = 0
        while not self._stop:
            n += 1
        self.count = n

    def __enter__(self) -> _Spinner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()


def _spin_rate(seconds: float) -> float:
    with _Spinner() as spinner:
        started = time.perf_counter()
        time.sleep(seconds)
    return spinner.count / (time.perf_counter() - started)


def measure(rows: int, workdir: Path) -> dict[str, Any]:
    ledger = Ledger(LedgerSettings(database=str(workdir / "ledger.sqlite")))
    ledger._migrate()  # as start() does before the first request
    made = [_row(n) for n in range(rows)]  # built by the request before it records
    started = time.perf_counter()
    for row in made:
        ledger.record(row)
    record_us = (time.perf_counter() - started) / rows * 1e6

    before = _spin_rate(1.0)

    def drain() -> None:
        while ledger.pending:
            ledger._write(ledger._take())

    with _Spinner() as spinner:
        started = time.perf_counter()
        writer = threading.Thread(target=drain)
        writer.start()
        writer.join()
        elapsed = time.perf_counter() - started
    # The machine's speed drifts; the rate alone is taken on both sides.
    alone = (before + _spin_rate(1.0)) / 2
    slowdown = max(0.0, 1 - spinner.count / elapsed / alone)
    return {"rows": rows, "record_us_per_row": round(record_us, 2),
            "writer_rows_per_s": round(rows / elapsed),
            "writer_ms": round(elapsed * 1000, 1),
            "loop_slowdown_while_writing": round(slowdown, 3),
            "loop_us_lost_per_row": round(slowdown * elapsed / rows * 1e6, 2)}


def section(result: dict[str, Any]) -> str:
    r = result["result"]
    lines = [
        "Written by `benchmarks/ledger_writer.py` (JSON: "
        "`benchmarks/results/ledger_writer.json`).",
        "",
        *benchdoc.machine_lines(result["machine"]),
        f"- {r['rows']} rows recorded as the gateway records them, then written by the "
        "ledger's writer thread to SQLite while a thread spinning a counter stands in for a "
        "busy event loop (switch interval 0.5 ms, as `interlock serve` sets).",
        "",
        "| record() per row | writer rows/s beside a busy loop | loop slowed while writing "
        "| loop time lost per row |",
        "|---:|---:|---:|---:|",
        f"| {r['record_us_per_row']} us | {r['writer_rows_per_s']:,} | "
        f"{r['loop_slowdown_while_writing'] * 100:.0f} % | {r['loop_us_lost_per_row']} us |",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    sys.setswitchinterval(SWITCH_INTERVAL)
    info = benchdoc.machine(["interlock", "sqlalchemy"])
    with tempfile.TemporaryDirectory(prefix="interlock-ledger-bench-") as tmp:
        measured = measure(args.rows, Path(tmp))
    result = {"machine": info, "result": measured}
    print(measured)
    benchdoc.publish(result, args.out, "Ledger writer beside a busy event loop",
                     None if args.no_doc else section(result))


if __name__ == "__main__":
    main()
