"""Routing decision latency: the time one routing decision takes, per router.

    python benchmarks/routing_latency.py [--train 10000] [--queries 2000] [--data DIR]

Each learned router is trained on 10,000 prompts (RouteLLM's MMLU outcomes from
../shared when they are there, else a synthetic table) with the default hashed
featuriser, then asked about held-out prompts one at a time: featurise, predict,
compare with a threshold. No network. The rules router (the seed's tiers from
examples/claude-gemini.yaml) is timed the same way when routing/rules.py exists.

Writes benchmarks/results/routing_latency.json and the "Routing decision
latency" section of docs/benchmarks.md. The target is P99 <= 1 ms.

Imports: interlock, numpy, the standard library, benchmarks/benchdoc.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

# One decision is a small matrix-vector product: a second BLAS thread buys nothing
# and, on a busy machine, makes the call wait for a descheduled helper thread (the
# P99 jumped tenfold). Set before numpy loads; an explicit setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchdoc  # noqa: E402
from interlock.routing.data import OutcomeTable, load_outcomes  # noqa: E402
from interlock.routing.features import HashedNgramFeaturizer  # noqa: E402
from interlock.routing.learned import make_router  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "routellm-mmlu"
RESULTS = ROOT / "benchmarks" / "results" / "routing_latency.json"
ROUTERS = ("knn", "mf", "sw_ranking", "classifier", "random")
TARGET_MS = 1.0


def synthetic_table(n: int, seed: int = 0) -> OutcomeTable:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    prompts = [" ".join(rng.choice(vocab, int(rng.integers(20, 120)))) for _ in range(n)]
    scores = (rng.random((n, 2)) < [0.7, 0.8]).astype(float)
    return OutcomeTable(prompts, ["weak", "strong"], scores)


def load_table(data: Path, n_train: int, n_queries: int, seed: int) -> tuple[
    OutcomeTable, list[str], str
]:
    if data.exists():
        table = load_outcomes(data)
        source = f"RouteLLM MMLU ({data.name})"
    else:
        table = synthetic_table(n_train + n_queries, seed)
        source = "synthetic (the shared MMLU data was not found)"
    order = np.random.default_rng(seed).permutation(len(table))
    queries = [table.prompts[i] for i in order[n_train : n_train + n_queries]]
    return table.take(order[:n_train]), queries, source


def time_calls(decide: Callable[[str], object], prompts: list[str]) -> dict[str, float]:
    for p in prompts[:50]:  # warm caches and lazy imports
        decide(p)
    times = np.empty(len(prompts))
    gc.disable()
    try:
        for i, p in enumerate(prompts):
            started = time.perf_counter_ns()
            decide(p)
            times[i] = (time.perf_counter_ns() - started) / 1e6
    finally:
        gc.enable()
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(times.mean()),
        "max_ms": float(times.max()),
    }


def learned_decider(name: str, table: OutcomeTable) -> tuple[Callable[[str], object], float]:
    router = make_router(name)
    started = time.perf_counter()
    router.fit(table, HashedNgramFeaturizer(), seed=0)
    fit_s = time.perf_counter() - started
    strong, weak = router.strong_weak()

    def decide(prompt: str) -> bool:
        return bool(router.win_prob([prompt], strong, weak)[0] >= 0.5)

    return decide, fit_s


def rules_decider() -> Callable[[str], object] | None:
    try:
        import yaml

        from interlock.routing.rules import RulesRouter
        from interlock.routing.settings import RulesRouterSettings
        from interlock.types import ChatRequest, Message, TextPart
    except ImportError:
        return None
    config = yaml.safe_load((ROOT / "examples" / "claude-gemini.yaml").read_text())
    spec = next(
        (v for v in config["routing"]["routers"].values() if v.get("type") == "rules"), None
    )
    if spec is None:
        return None
    router = RulesRouter("tiers", RulesRouterSettings.model_validate(spec))

    def decide(prompt: str) -> object:
        request = ChatRequest(model="auto", messages=[Message("user", [TextPart(prompt)])])
        return router.route(request)

    return decide


def markdown(report: dict) -> str:
    lines = [
        f"Single prompt, no network, default hashed featuriser; {report['train_prompts']:,} "
        f"training prompts from {report['source']}; {report['queries']:,} held-out prompts "
        f"timed one at a time (median {report['median_prompt_chars']} characters), "
        f"BLAS limited to one thread (OPENBLAS_NUM_THREADS={report['blas_threads']}). "
        f"Target: P99 <= {TARGET_MS:g} ms. The machine is shared with other work, so the "
        "tail moves with its load.",
        "",
        *benchdoc.machine_lines(report["machine"]),
        "",
        "| router | P50 ms | P99 ms | mean ms | max ms | meets P99 target | train s |",
        "|---|---:|---:|---:|---:|:---:|---:|",
    ]
    for name, r in report["routers"].items():
        ok = "yes" if r["p99_ms"] <= TARGET_MS else "no"
        fit = benchdoc.fmt(r.get("fit_seconds"), 1) if r.get("fit_seconds") is not None else "-"
        lines.append(
            f"| {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['mean_ms']:.3f} "
            f"| {r['max_ms']:.2f} | {ok} | {fit} |"
        )
    lines += ["", "Run: `python benchmarks/routing_latency.py`"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-doc", action="store_true", help="Do not touch docs/benchmarks.md")
    args = parser.parse_args()

    info = benchdoc.machine(["numpy", "scipy"])
    table, queries, source = load_table(args.data, args.train, args.queries, args.seed)
    report: dict = {
        "machine": info, "source": source, "train_prompts": len(table),
        "queries": len(queries),
        "median_prompt_chars": int(np.median([len(q) for q in queries])),
        "target_p99_ms": TARGET_MS, "routers": {},
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    rules = rules_decider()
    if rules is not None:
        report["routers"]["rules"] = time_calls(rules, queries)
    for name in [r for r in args.routers.split(",") if r]:
        decide, fit_s = learned_decider(name, table)
        report["routers"][name] = {**time_calls(decide, queries), "fit_seconds": fit_s}
        r = report["routers"][name]
        print(f"{name:12s} P50 {r['p50_ms']:.3f} ms  P99 {r['p99_ms']:.3f} ms", flush=True)
    info["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    body = markdown(report)
    print(body)
    if not args.no_doc:
        benchdoc.replace_section("Routing decision latency", body)


if __name__ == "__main__":
    main()
