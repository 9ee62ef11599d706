"""Gateway overhead: Interlock against LiteLLM and a pass-through floor, same upstream.

    .venv/bin/python benchmarks/overhead.py [--requests 2000] [--concurrency 1,16,64]
                                            [--quick] [--no-doc]

Starts, each as its own process on 127.0.0.1: the fake upstream (record off),
`interlock serve` (one worker, ledger on in a temporary SQLite file), the
pass-through floor (benchmarks/passthrough_proxy.py), the same floor parsing
JSON as a metering gateway must (`--parse`, a reference) and, when
benchmarks/.venv-litellm exists (benchmarks/litellm_setup.sh), a LiteLLM proxy
with one worker. This process is the load generator (aiohttp, closed loop; its
own collector is kept out of each batch, see loadgen.closed_loop).

For each mode (non-stream: full latency; stream: time to the first SSE data
line) and each concurrency, every target gets `--requests` requests, split into
`--rounds` batches; the targets take turns batch by batch, so that the machine's
noise hits them alike, in a different order each round, chosen so that each
target comes straight after each other one equally often (`balanced_orders`).
Overhead at percentile p is
p(latency through the proxy) - p(latency straight to the upstream), both from
the same run and load. Writes benchmarks/results/overhead.json and the
"Gateway overhead" section of docs/benchmarks.md.

A benchmark, not a test. Imports: aiohttp, uvloop, yaml, the standard library,
benchmarks/loadgen.py, benchmarks/benchdoc.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
import yaml

import benchdoc
from loadgen import (
    CHAT_MESSAGES,
    Batch,
    Sample,
    Target,
    new_session,
    percentile,
    run_batch,
    summary_ms,
)

HERE = Path(__file__).resolve().parent
LITELLM_VENV = HERE / ".venv-litellm"
RESULTS = HERE / "results" / "overhead.json"
MASTER_KEY = "sk-bench"
MODES = ("non-stream", "stream")
PACKAGES = ["interlock", "aiohttp", "uvicorn", "uvloop", "httptools", "orjson", "pydantic",
            "sqlalchemy"]


# -- processes ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    health: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tree(self) -> list[int]:
        """This server's pid and its descendants (LiteLLM may fork workers)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_seconds(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick


def start(name: str, argv: list[str], port: int, health: str, workdir: Path,
          env: dict[str, str] | None = None) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    return Server(name, port, health, proc, log)


def wait_healthy(server: Server, timeout: float) -> None:
    url = f"http://127.0.0.1:{server.port}{server.health}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited; see {server.log}:\n"
                               + server.log.read_text()[-2000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except OSError as exc:
            if getattr(exc, "code", 500) < 500:  # an HTTP 4xx still means it is up
                return
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} did not become healthy in {timeout:.0f} s; "
                       f"see {server.log}")


def stop(server: Server) -> None:
    if server.proc.poll() is not None:
        return
    os.killpg(server.proc.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=5)


def serve_fake(port: int) -> None:
    """The fake upstream in this process: `FakeUpstreamApp(record=False)` on uvicorn.

    Not `interlock fake-upstream`, only for its keep-alive: uvicorn closes idle
    connections after 5 s by default, and while one target's batch runs, the
    others' pooled upstream connections sit idle longer than that, so each proxy
    would pay reconnects (or a stale-connection error) that a real provider's long
    keep-alive never causes. uvloop and httptools keep the fake cheap."""
    import uvicorn

    from interlock.testing.fake_upstream import FakeUpstreamApp

    uvicorn.run(FakeUpstreamApp(record=False), host="127.0.0.1", port=port, loop="uvloop",
                http="httptools", log_level="warning", access_log=False, lifespan="off",
                timeout_keep_alive=300, backlog=4096)


def interlock_config(upstream: str, ledger: Path | None) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "bench", "litellm_params": {
            "model": "openai/bench-model", "api_base": upstream, "api_key": "sk-dummy"}}],
        "general_settings": {"master_key": MASTER_KEY},
        "ledger": {"database": None if ledger is None else str(ledger)},
    }


def litellm_config(upstream: str) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "bench", "litellm_params": {
            "model": "openai/bench-model", "api_base": upstream, "api_key": "sk-dummy"}}],
        "general_settings": {"master_key": MASTER_KEY},
    }


def start_servers(workdir: Path, with_litellm: bool, ledger_off_too: bool,
                  parsing_floor: bool) -> tuple[dict[str, Server], str]:
    py = sys.executable
    fake_port = free_port()
    fake = start("fake", [py, __file__, "--serve-fake", str(fake_port)], fake_port, "/",
                 workdir)
    upstream = f"http://127.0.0.1:{fake_port}/openai/v1"
    servers = {"fake": fake}
    variants: dict[str, Path | None] = {"interlock": workdir / "ledger.sqlite"}
    if ledger_off_too:
        variants["interlock-noledger"] = None
    for name, ledger in variants.items():
        cfg = workdir / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(interlock_config(upstream, ledger)))
        port = free_port()
        servers[name] = start(name, [py, "-m", "interlock.cli.main", "serve", "--config",
                                     str(cfg), "--port", str(port)],
                              port, "/health/liveness", workdir)
    port = free_port()
    servers["floor"] = start("floor", [
        py, str(HERE / "passthrough_proxy.py"), "--port", str(port), "--upstream", upstream],
        port, "/health", workdir)
    if parsing_floor:
        port = free_port()
        servers["floor-parse"] = start("floor-parse", [
            py, str(HERE / "passthrough_proxy.py"), "--port", str(port), "--upstream", upstream,
            "--parse", "bench-model"], port, "/health", workdir)
    if with_litellm:
        cfg = workdir / "litellm.yaml"
        cfg.write_text(yaml.safe_dump(litellm_config(upstream)))
        port = free_port()
        servers["litellm"] = start("litellm", [
            str(LITELLM_VENV / "bin" / "litellm"), "--config", str(cfg), "--port", str(port),
            "--num_workers", "1"], port, "/health/liveliness", workdir,
            env={"LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    for server in servers.values():
        wait_healthy(server, 180 if server.name == "litellm" else 30)
    return servers, upstream


# -- load --------------------------------------------------------------------

def body(model: str, stream: bool) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": CHAT_MESSAGES}
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


def targets(servers: dict[str, Server], upstream: str, stream: bool) -> list[Target]:
    auth = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    plain = {"content-type": "application/json", "authorization": "Bearer sk-dummy"}
    out = [Target("direct", upstream + "/chat/completions", body("bench-model", stream), plain)]
    for name, model, headers in (("interlock", "bench", auth), ("floor", "bench-model", plain),
                                 ("litellm", "bench", auth), ("interlock-noledger", "bench", auth),
                                 ("floor-parse", "bench", plain)):
        if name in servers:
            url = f"http://127.0.0.1:{servers[name].port}/v1/chat/completions"
            out.append(Target(name, url, body(model, stream), headers))
    return out


@dataclass
class Cell:
    """Everything measured for one target at one mode and concurrency."""

    samples: list[Sample] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: float = 0.0  # CPU seconds the target's processes used during its batches
    # The same samples, one list per interleaved round, for the spread between rounds.
    rounds: list[list[Sample]] = field(default_factory=list)


@dataclass
class Plan:
    requests: int
    litellm_requests: int  # LiteLLM answers ~35 requests/s: fewer keep the run bounded
    concurrencies: list[int]
    rounds: int  # 0 until the targets are known: one round per balanced order
    warmup: int
    batch_timeout: float
    deadline: float  # perf_counter
    skipped: list[str] = field(default_factory=list)


async def warm_up(sessions: dict[str, aiohttp.ClientSession], servers: dict[str, Server],
                  upstream: str, plan: Plan) -> None:
    for stream in (False, True):
        for target in targets(servers, upstream, stream):
            await run_batch(sessions[target.name], target, count=plan.warmup, concurrency=16,
                            stream=stream, deadline=time.perf_counter() + 60)


async def measure(servers: dict[str, Server], upstream: str,
                  plan: Plan) -> dict[tuple[str, int, str], Cell]:
    cells: dict[tuple[str, int, str], Cell] = {}
    limit = max(plan.concurrencies)
    names = [t.name for t in targets(servers, upstream, False)]
    sessions = {name: new_session(limit) for name in names}
    try:
        await warm_up(sessions, servers, upstream, plan)
        for mode in MODES:
            for conc in plan.concurrencies:
                await measure_cell(sessions, servers, upstream, plan, mode, conc, cells)
    finally:
        for session in sessions.values():
            await session.close()
    return cells


async def measure_cell(sessions: dict[str, aiohttp.ClientSession],
                       servers: dict[str, Server], upstream: str, plan: Plan, mode: str,
                       conc: int, cells: dict[tuple[str, int, str], Cell]) -> None:
    stream = mode == "stream"
    tlist = targets(servers, upstream, stream)
    orders = balanced_orders(len(tlist))
    for rnd in range(plan.rounds):
        if time.perf_counter() > plan.deadline:
            plan.skipped.append(f"{mode} c={conc} rounds {rnd + 1}..{plan.rounds}")
            return
        order = [tlist[i] for i in orders[rnd % len(orders)]]
        for target in order:
            cell = cells.setdefault((mode, conc, target.name), Cell())
            server = servers["fake" if target.name == "direct" else target.name]
            cpu0 = server.cpu_seconds()
            count = plan.litellm_requests if target.name == "litellm" else plan.requests
            batch: Batch = await run_batch(
                sessions[target.name], target, count=-(-count // plan.rounds), concurrency=conc,
                stream=stream, deadline=min(plan.deadline,
                                            time.perf_counter() + plan.batch_timeout))
            cell.cpu += server.cpu_seconds() - cpu0
            cell.samples += batch.samples
            cell.rounds.append(batch.samples)
            cell.elapsed += batch.elapsed
        print(f"  {mode:10s} c={conc:<3d} round {rnd + 1}/{plan.rounds} done", flush=True)


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of `n` targets, one a round, in which each target comes straight
    after each other one equally often (a Williams design: n orders for even n,
    2n for odd). A batch can run slower after one target than after another (at
    concurrency 64, up to a quarter slower straight after `direct`): with the
    plain rotation used before, `interlock` always came after `direct` and
    carried that alone (docs/benchmarks.md, "Runs 40-51")."""
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first.append(low)
            low += 1
        else:
            first.append(high)
            high -= 1
    orders = [[(i + shift) % n for i in first] for shift in range(n)]
    return orders + [order[::-1] for order in orders] if n % 2 else orders


# -- analysis ----------------------------------------------------------------

def describe(cell: Cell, stream: bool) -> dict[str, Any]:
    ok = [s for s in cell.samples if s.ok]
    metric = _metric(cell.samples, stream)
    hdr = [s.overhead_header_ms / 1000 for s in ok if s.overhead_header_ms is not None]
    out: dict[str, Any] = {
        "requests": len(cell.samples),
        "errors": len(cell.samples) - len(ok),
        "rps": round(len(ok) / cell.elapsed, 1) if cell.elapsed else None,
        "latency_ms": summary_ms(metric),
        "cpu_ms_per_request": round(cell.cpu * 1000 / len(cell.samples), 3)
        if cell.samples else None,
    }
    if stream:
        out["full_stream_ms"] = summary_ms([s.latency for s in ok])
    if hdr:
        out["self_reported_overhead_ms"] = summary_ms(hdr)
    kinds = Counter(s.error for s in cell.samples if not s.ok)
    if kinds:
        out["error_kinds"] = dict(kinds)
    return out


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    # A floor overhead at or below zero (noise) makes a ratio meaningless.
    return None if a is None or b is None or b <= 0 else round(a / b, 2)


def analyse(cells: dict[tuple[str, int, str], Cell], plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for mode in MODES:
        for conc in plan.concurrencies:
            if (mode, conc, "direct") not in cells:
                continue
            per = {name: describe(cell, mode == "stream")
                   for (m, c, name), cell in cells.items() if m == mode and c == conc}
            base = per["direct"]["latency_ms"]
            for name, item in per.items():
                if name != "direct":
                    item["overhead_ms"] = {q: _diff(item["latency_ms"][q], base[q])
                                           for q in ("p50", "p95", "p99")}
            found = ratios(per)
            spread = round_ratios(cells, mode, conc)
            if spread and "interlock_over_floor" in found:
                found["interlock_over_floor"]["by_round"] = spread
            rows.append({"mode": mode, "metric": "ttft" if mode == "stream" else "latency",
                         "concurrency": conc, "targets": per, "ratios": found})
    return rows


def _metric(samples: list[Sample], stream: bool) -> list[float]:
    ok = [s for s in samples if s.ok]
    return [s.ttft for s in ok if s.ttft is not None] if stream else [s.latency for s in ok]


def round_ratios(cells: dict[tuple[str, int, str], Cell], mode: str,
                 conc: int) -> dict[str, list[float | None]]:
    """Interlock/floor overhead at P50 and P99 within each interleaved round, against
    that round's direct run: how far one cell moves on this machine."""
    keys = [(mode, conc, name) for name in ("direct", "interlock", "floor")]
    if any(k not in cells for k in keys):
        return {}
    direct, il, floor = (cells[k].rounds for k in keys)
    out: dict[str, list[float | None]] = {"p50": [], "p99": []}
    for d, i, f in zip(direct, il, floor, strict=False):
        for q, key in ((50, "p50"), (99, "p99")):
            base, mine, theirs = (percentile(_metric(x, mode == "stream"), q) for x in (d, i, f))
            if base is None or mine is None or theirs is None or mine <= base:
                out[key].append(None)
            else:
                out[key].append(_ratio(mine - base, theirs - base))
    return out


def ratios(per: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    il = per.get("interlock", {}).get("overhead_ms")
    if il is None:
        return out
    for peer, key in (("litellm", "litellm_over_interlock"), ("floor", "interlock_over_floor")):
        other = per.get(peer, {}).get("overhead_ms")
        if other is None:
            continue
        num, den = (other, il) if peer == "litellm" else (il, other)
        out[key] = {q: _ratio(num[q], den[q]) for q in ("p50", "p99")}
    if "floor" in per:
        # At concurrency the proxies queue, so latency follows CPU time per request.
        out["interlock_over_floor"]["cpu"] = _ratio(per["interlock"]["cpu_ms_per_request"],
                                                    per["floor"]["cpu_ms_per_request"])
    return out


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lite = [r["ratios"].get("litellm_over_interlock") for r in rows]
    # Judged on the whole cell; the per-round spread is shown, not judged.
    floor = [{q: v for q, v in (r["ratios"].get("interlock_over_floor") or {}).items()
              if q in ("p50", "p99")} for r in rows]
    return {
        "litellm_at_least_5x": None if not all(lite) else all(
            (v or 0) >= 5 for item in lite if item for v in item.values()),
        "within_2x_of_floor": None if not all(floor) else all(
            v is not None and v <= 2 for item in floor if item for v in item.values()),
    }


# -- output ------------------------------------------------------------------

HEAD = ("| target | requests | errors | RPS | P50 ms | P95 ms | P99 ms | overhead P50 | "
        "overhead P95 | overhead P99 | CPU ms/req |")


def table(row: dict[str, Any]) -> list[str]:
    lines = [HEAD, "|" + "---|" * 11]
    f = benchdoc.fmt
    for name, item in row["targets"].items():
        lat, ovh = item["latency_ms"], item.get("overhead_ms", {})
        lines.append(
            f"| {name} | {item['requests']} | {item['errors']} | {f(item['rps'], 0)} | "
            f"{f(lat['p50'])} | {f(lat['p95'])} | {f(lat['p99'])} | "
            + (" | ".join(f(ovh.get(q)) for q in ("p50", "p95", "p99")) if ovh else "- | - | -")
            + f" | {f(item['cpu_ms_per_request'])} |")
    return lines


def ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    def x(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}x"

    def spread(values: list[float | None] | None) -> str:
        # A round where Interlock's overhead came out at or below zero is noise.
        known = [v for v in values or [] if v is not None and v > 0]
        return f"{min(known):.1f}-{max(known):.1f}x" if known else "n/a"

    lines = ["| mode | concurrency | LiteLLM/Interlock P50 | LiteLLM/Interlock P99 | "
             "Interlock/floor P50 | Interlock/floor P99 | Interlock/floor CPU per request | "
             "Interlock/floor P50, P99 within single rounds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lite = r["ratios"].get("litellm_over_interlock", {})
        floor = r["ratios"].get("interlock_over_floor", {})
        by_round = floor.get("by_round") or {}
        lines.append(f"| {r['mode']} | {r['concurrency']} | {x(lite.get('p50'))} | "
                     f"{x(lite.get('p99'))} | {x(floor.get('p50'))} | {x(floor.get('p99'))} | "
                     f"{x(floor.get('cpu'))} | {spread(by_round.get('p50'))}, "
                     f"{spread(by_round.get('p99'))} |")
    return lines


def report_text(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for row in result["rows"]:
        what = "time to first token" if row["mode"] == "stream" else "full response latency"
        lines += ["", f"**{row['mode']}, concurrency {row['concurrency']}** ({what})", ""]
        lines += table(row)
    lines += ["", "**Ratios of overhead** (target: LiteLLM/Interlock >= 5x, "
              "Interlock/floor <= 2x)", ""]
    lines += ratio_lines(result["rows"])
    return "\n".join(lines)


def doc_section(result: dict[str, Any]) -> str:
    cfg, v = result["config"], result["verdict"]

    def said(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "**missed**")

    intro = [
        "Written by `benchmarks/overhead.py` (JSON: `benchmarks/results/overhead.json`).",
        "",
        *benchdoc.machine_lines(result["machine"]),
        f"- Load: {cfg['requests']} requests per target per cell"
        + (f" ({cfg['litellm_requests']} for LiteLLM)"
           if cfg.get("litellm_requests", cfg["requests"]) != cfg["requests"] else "")
        + f" in {cfg['rounds']} interleaved rounds (each in another order; each target "
        "straight after each other equally often over the rounds of a balanced design)"
        + ", closed loop, "
        f"aiohttp client in its own process, its garbage collector off during each batch; "
        f"warm-up {cfg['warmup']} requests per target per mode.",
        "- Targets, one process each on 127.0.0.1, one worker each: `direct` (the fake "
        "upstream, the baseline), `interlock` (`interlock serve`, ledger ON: "
        f"{cfg['interlock_ledger']}; `interlock-noledger`, when present, is the same with "
        "`ledger: {database: null}`, for reference only), `floor` "
        "(benchmarks/passthrough_proxy.py: raw ASGI on "
        "uvicorn+uvloop+httptools forwarding bytes with one aiohttp session; `floor-parse`, "
        "when present, is the same but parses the request's JSON and every answer event's, "
        "the least a gateway that meters usage must do, for reference only), `litellm` "
        f"(LiteLLM proxy {cfg.get('litellm_version') or 'not installed'}, default settings, "
        "no database).",
        "- Overhead at Pn = Pn(through the proxy) - Pn(direct), same run and load. Stream "
        "rows measure time to the first SSE `data:` line. CPU ms/req = CPU time of the "
        "target's processes during its batches / requests.",
        f"- Targets: LiteLLM/Interlock >= 5x at P50 and P99: {said(v['litellm_at_least_5x'])}; "
        f"Interlock within 2x of the floor: {said(v['within_2x_of_floor'])}.",
    ]
    if result.get("skipped"):
        intro.append(f"- Cut short by the time bound: {', '.join(result['skipped'])}.")
    return "\n".join(intro) + "\n" + report_text(result)


def ledger_rows(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        names = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        return {n: db.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}


def litellm_version() -> str | None:
    py = LITELLM_VENV / "bin" / "python"
    if not py.exists():
        return None
    out = subprocess.run([str(py), "-c", "import importlib.metadata as m;"
                          "print(m.version('litellm'))"], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or None


# -- main --------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Interlock vs LiteLLM vs pass-through overhead.")
    p.add_argument("--requests", type=int, default=2000, help="per target, per cell")
    p.add_argument("--litellm-requests", type=int, default=None,
                   help="per cell for LiteLLM (default: --requests); more samples steady "
                        "the fast targets' P99, and LiteLLM serves about 35 requests/s")
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved batches per cell (default: one for each order of the "
                        "balanced design, the number of targets, twice that if odd)")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--max-minutes", type=float, default=25.0, help="bound on the whole run")
    p.add_argument("--batch-timeout", type=float, default=180.0, help="seconds per batch")
    p.add_argument("--no-litellm", action="store_true")
    p.add_argument("--no-ledger-off", action="store_true",
                   help="skip the reference Interlock with the ledger off")
    p.add_argument("--no-parse-floor", action="store_true",
                   help="skip the reference floor that parses JSON (passthrough_proxy --parse)")
    p.add_argument("--quick", action="store_true", help="300 requests, 2 rounds, smoke run")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--render", action="store_true",
                   help="rewrite the doc section from --out without measuring")
    p.add_argument("--serve-fake", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.warmup = 300, 2, 100
    if args.litellm_requests is None:
        args.litellm_requests = args.requests
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan(args.requests, args.litellm_requests,
                [int(c) for c in args.concurrency.split(",")], args.rounds or 0,
                args.warmup, args.batch_timeout,
                time.perf_counter() + args.max_minutes * 60)
    with_litellm = not args.no_litellm and (LITELLM_VENV / "bin" / "litellm").exists()
    if not with_litellm:
        print("note: LiteLLM skipped (run benchmarks/litellm_setup.sh to include it)")
    info = benchdoc.machine(PACKAGES)
    with tempfile.TemporaryDirectory(prefix="interlock-overhead-") as tmp:
        workdir = Path(tmp)
        servers: dict[str, Server] = {}
        try:
            servers, upstream = start_servers(workdir, with_litellm, not args.no_ledger_off,
                                             not args.no_parse_floor)
            print("servers up: " + ", ".join(f"{s.name}:{s.port}" for s in servers.values()))
            if not plan.rounds:
                plan.rounds = len(balanced_orders(len(targets(servers, upstream, False))))
            cells = uvloop.run(measure(servers, upstream, plan))
        finally:
            for server in servers.values():
                stop(server)
        ledger = ledger_rows(workdir / "ledger.sqlite")
    rows = analyse(cells, plan)
    return {
        "machine": {**info, "loadavg_1min_end": round(os.getloadavg()[0], 2)},
        "config": {"requests": plan.requests, "litellm_requests": plan.litellm_requests,
                   "concurrency": plan.concurrencies,
                   "rounds": plan.rounds, "warmup": plan.warmup,
                   "interlock_ledger": "SQLite file in a temporary directory, written by "
                                       "its child process, whose CPU is counted",
                   "interlock_ledger_rows_after_run": ledger,
                   "litellm_version": litellm_version() if with_litellm else None},
        "rows": rows, "verdict": verdict(rows), "skipped": plan.skipped,
    }


def main() -> None:
    args = parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return
    result = json.loads(args.out.read_text()) if args.render else run(args)
    print(report_text(result))
    print("\nverdict:", json.dumps(result["verdict"]))
    benchdoc.publish(result, None if args.render else args.out, "Gateway overhead",
                     None if args.no_doc else doc_section(result))


if __name__ == "__main__":
    main()
