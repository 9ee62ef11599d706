"""Routing quality on RouteLLM's MMLU outcomes: every learned router, 5-fold cross-validation.

    python benchmarks/routing_quality.py [--data ../shared/data/routellm-mmlu]
        [--routers sw_ranking,mf,knn,classifier] [--folds 5] [--seed 0]

Reads the shared data where it lies (it is never copied into the repository),
runs the same evaluation as `interlock eval` (two models: GPT-4 strong,
Mixtral weak; random and oracle baselines; dollar axis from today's prices
with input tokens estimated from the prompt and a fixed output length), and
writes `benchmarks/results/routing_quality.json` and `docs/img/routing_mmlu.png`.
It prints the table and a Markdown version for docs/routing.md. Exits 0 with a
message when the data is not there.

Imports: interlock, the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "routellm-mmlu"
RESULTS = ROOT / "benchmarks" / "results" / "routing_quality.json"
PLOT = ROOT / "docs" / "img" / "routing_mmlu.png"
STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"


def _markdown(report_data: dict) -> str:
    rows = [
        "| router | APGR | APGR (10 bins) | CPT(50%) | CPT(80%) | strong share for 95% "
        "| $/1k requests at 95% | saving | train+predict s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for r in report_data["results"]:
        cheap = r.get("cheapest_95") or {}
        seconds = None
        if r.get("fit_seconds") is not None:
            seconds = r["fit_seconds"] + (r.get("predict_seconds") or 0.0)
        rows.append(
            f"| {r['name']} | {num(r.get('apgr'))} | {num(r.get('apgr_10_bins'))} "
            f"| {pct(r.get('cpt50'))} | {pct(r.get('cpt80'))} "
            f"| {pct(r.get('share_for_95pct_strong'))} "
            f"| {('$' + cheap['usd_per_1k_requests']) if cheap else '-'} "
            f"| {pct(cheap.get('saving_share')) if cheap else '-'} "
            f"| {'-' if seconds is None else f'{seconds:.0f}'} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--routers", default="sw_ranking,mf,knn,classifier")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-tokens", type=int, default=500)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"no data at {args.data}; nothing to measure")
        return 0

    from interlock.evaluation.datasets import load_eval_data
    from interlock.evaluation.plots import save_plot
    from interlock.evaluation.report import render_table, report_json
    from interlock.evaluation.runner import EvalOptions, evaluate

    started = time.perf_counter()
    table = load_eval_data(args.data)
    options = EvalOptions(
        routers=[r for r in args.routers.split(",") if r],
        folds=args.folds, seed=args.seed, strong=STRONG, weak=WEAK,
        output_tokens=args.output_tokens,
    )
    report = evaluate(table, options)
    elapsed = time.perf_counter() - started
    data = report_json(report)
    data["benchmark"] = {
        "data": str(args.data),
        "wall_seconds": round(elapsed, 1),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    save_plot(report, args.plot, title=f"MMLU ({report.prompts} questions), "
              f"{args.folds}-fold cross-validation")
    print(render_table(report))
    print()
    print(_markdown(data))
    print(f"\nwall time {elapsed:.0f} s on {os.cpu_count()} CPUs")
    print(f"wrote {args.json} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
