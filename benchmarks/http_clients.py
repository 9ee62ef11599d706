"""Choosing the gateway's HTTP client and server stack by measurement.

    .venv/bin/python benchmarks/http_clients.py [--requests 2000] [--concurrency 1,16,64]
                                                [--quick] [--no-doc]

Client: aiohttp and httpx each POST a typical chat body to the same fake upstream
(its own process) from this process, under uvloop as in the gateway, at each
concurrency, non-stream (read the JSON) and stream (read SSE lines). Reported:
requests/s, P50/P99 latency and this process's CPU time per request, which is
what the client costs the gateway.

Server: uvicorn serving one tiny ASGI app (read the body, answer a chat-sized
JSON) with uvloop+httptools, asyncio+h11 and the two mixed pairs, each in its
own process, loaded by aiohttp from here. Reported: requests/s, P50/P99 and the
server's CPU time per request.

Clients and stacks take turns round by round so that noise hits them alike.
Writes benchmarks/results/http_clients.json and the "HTTP client choice" and
"Server stack choice" sections of docs/benchmarks.md.

A benchmark, not a test. Imports: aiohttp, httpx, uvloop, uvicorn, orjson, the
standard library, benchmarks/loadgen.py, benchmarks/benchdoc.py, benchmarks/overhead.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

import benchdoc
import overhead
from loadgen import CHAT_MESSAGES, Batch, Sample, closed_loop, summary_ms

RESULTS = Path(__file__).resolve().parent / "results" / "http_clients.json"
STACKS = [("uvloop", "httptools"), ("asyncio", "h11"), ("uvloop", "h11"),
          ("asyncio", "httptools")]
PACKAGES = ["aiohttp", "httpx", "httpcore", "h11", "uvicorn", "uvloop", "httptools"]
Call = Callable[[], Awaitable[Sample]]


# -- the tiny app for the server-stack comparison ----------------------------

_ANSWER = json.dumps({
    "id": "chatcmpl-0", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "A simulated answer of a typical length. " * 6}}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100},
}).encode()


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(_ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": _ANSWER})


def serve_tiny(port: int, loop: str, http: str) -> None:
    import uvicorn

    uvicorn.run(tiny_app, host="127.0.0.1", port=port, loop=loop, http=http,
                log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=300)


# -- client calls ------------------------------------------------------------

def _body(stream: bool) -> bytes:
    payload: dict[str, Any] = {"model": "bench-model", "messages": CHAT_MESSAGES}
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-dummy"}


def aiohttp_call(session: aiohttp.ClientSession, url: str, stream: bool) -> Call:
    body = _body(stream)

    async def call() -> Sample:
        start = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=HEADERS) as resp:
                if stream:
                    async for _line in resp.content:
                        pass
                else:
                    await resp.read()
                ok = resp.status == 200
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Sample(time.perf_counter() - start, None, False, error=type(exc).__name__)
        return Sample(time.perf_counter() - start, None, ok)

    return call


def httpx_call(client: httpx.AsyncClient, url: str, stream: bool) -> Call:
    body = _body(stream)

    async def call() -> Sample:
        start = time.perf_counter()
        try:
            if stream:
                async with client.stream("POST", url, content=body, headers=HEADERS) as resp:
                    async for _line in resp.aiter_lines():
                        pass
            else:
                resp = await client.post(url, content=body, headers=HEADERS)
                resp.read()
            ok = resp.status_code == 200
        except httpx.HTTPError as exc:
            return Sample(time.perf_counter() - start, None, False, error=type(exc).__name__)
        return Sample(time.perf_counter() - start, None, ok)

    return call


def describe(batches: list[tuple[Batch, float]]) -> dict[str, Any]:
    samples = [s for b, _ in batches for s in b.samples]
    ok = [s.latency for s in samples if s.ok]
    elapsed = sum(b.elapsed for b, _ in batches)
    cpu = sum(c for _, c in batches)
    return {"requests": len(samples), "errors": len(samples) - len(ok),
            "rps": round(len(ok) / elapsed, 1) if elapsed else None,
            "latency_ms": summary_ms(ok),
            "cpu_us_per_request": round(cpu * 1e6 / len(samples), 1) if samples else None}


# -- runs --------------------------------------------------------------------

async def compare_clients(url: str, concurrencies: list[int], requests: int,
                          rounds: int) -> list[dict[str, Any]]:
    limit = max(concurrencies)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
    client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(
        max_connections=limit, max_keepalive_connections=limit))
    rows = []
    try:
        for stream in (False, True):
            calls = {"aiohttp": aiohttp_call(session, url, stream),
                     "httpx": httpx_call(client, url, stream)}
            for call in calls.values():  # warm-up: connections, caches
                await closed_loop(call, count=200, concurrency=limit, deadline=_far())
            for conc in concurrencies:
                cpu = {name: time.process_time for name in calls}
                per = await _interleave(calls, cpu, conc, requests, rounds)
                rows.append({"mode": "stream" if stream else "non-stream",
                             "concurrency": conc, "clients": per})
    finally:
        await session.close()
        await client.aclose()
    return rows


def _far() -> float:
    return time.perf_counter() + 120


async def _interleave(calls: dict[str, Call], cpu: dict[str, Callable[[], float]], conc: int,
                      requests: int, rounds: int) -> dict[str, Any]:
    """Each name's batches in turn, in an order that rotates every round."""
    got: dict[str, list[tuple[Batch, float]]] = {name: [] for name in calls}
    names = list(calls)
    for rnd in range(rounds):
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            cpu0 = cpu[name]()
            batch = await closed_loop(calls[name], count=-(-requests // rounds),
                                      concurrency=conc, deadline=_far())
            got[name].append((batch, cpu[name]() - cpu0))
    return {name: describe(b) for name, b in got.items()}


async def compare_stacks(servers: dict[str, overhead.Server], concurrencies: list[int],
                         requests: int, rounds: int) -> list[dict[str, Any]]:
    limit = max(concurrencies)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
    body = _body(False)
    calls: dict[str, Call] = {}
    rows = []
    try:
        for name, server in servers.items():
            url = f"http://127.0.0.1:{server.port}/"
            calls[name] = _post(session, url, body)
            await closed_loop(calls[name], count=200, concurrency=limit, deadline=_far())
        cpu = {name: server.cpu_seconds for name, server in servers.items()}
        for conc in concurrencies:
            per = await _interleave(calls, cpu, conc, requests, rounds)
            rows.append({"concurrency": conc, "stacks": per})
    finally:
        await session.close()
    return rows


def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> Call:
    async def call() -> Sample:
        start = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=HEADERS) as resp:
                await resp.read()
                ok = resp.status == 200
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Sample(time.perf_counter() - start, None, False, error=type(exc).__name__)
        return Sample(time.perf_counter() - start, None, ok)

    return call


# -- output ------------------------------------------------------------------

def _table(rows: list[dict[str, Any]], key: str, cpu_label: str) -> list[str]:
    f = benchdoc.fmt
    lines = [f"| mode | concurrency | {key} | RPS | P50 ms | P99 ms | {cpu_label} | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name, item in row[key + "s"].items():
            lat = item["latency_ms"]
            lines.append(f"| {row.get('mode', 'non-stream')} | {row['concurrency']} | {name} | "
                         f"{f(item['rps'], 0)} | {f(lat['p50'])} | {f(lat['p99'])} | "
                         f"{f(item['cpu_us_per_request'], 0)} | {item['errors']} |")
    return lines


def client_section(result: dict[str, Any]) -> str:
    cfg = result["config"]
    return "\n".join([
        "Written by `benchmarks/http_clients.py` (JSON: `benchmarks/results/http_clients.json`)."
        " The upstream client is what the gateway uses for every provider call.", "",
        *benchdoc.machine_lines(result["machine"]),
        f"- {cfg['requests']} POSTs of a chat body per client per cell, {cfg['rounds']} "
        "interleaved rounds, one pooled client each, under uvloop, to the fake upstream in "
        "its own process. CPU µs/req is this (client) process's CPU time per request.", "",
        *_table(result["clients"], "client", "client CPU µs/req"), "",
        result.get("client_conclusion", ""),
    ])


def stack_section(result: dict[str, Any]) -> str:
    cfg = result["config"]
    return "\n".join([
        "Written by `benchmarks/http_clients.py`. uvicorn serving one tiny ASGI app (read "
        "the body, answer a chat-sized JSON), one process per stack; load from aiohttp in "
        f"another process; {cfg['requests']} requests per stack per cell in {cfg['rounds']} "
        "interleaved rounds. CPU µs/req is the server process's CPU time per request.", "",
        *_table(result["stacks"], "stack", "server CPU µs/req"), "",
        result.get("stack_conclusion", ""),
    ])


def _mean_ratio(rows: list[dict[str, Any]], key: str, a: str, b: str, metric: str) -> float:
    vals = [r[key][b][metric] / r[key][a][metric] for r in rows
            if r[key][a][metric] and r[key][b][metric]]
    return round(sum(vals) / len(vals), 2) if vals else float("nan")


def conclusions(result: dict[str, Any]) -> None:
    c = result["clients"]
    cpu = _mean_ratio(c, "clients", "aiohttp", "httpx", "cpu_us_per_request")
    rps = _mean_ratio(c, "clients", "httpx", "aiohttp", "rps")
    result["client_conclusion"] = (
        f"Averaged over the cells: httpx uses {cpu}x the client CPU per request of aiohttp, "
        f"and aiohttp achieves {rps}x the requests/s of httpx. "
        + ("The measurement supports aiohttp in adapters/http.py." if cpu > 1 and rps > 1
           else "The measurement does not clearly favour aiohttp; see the rows."))
    s = result["stacks"]
    cpu = _mean_ratio(s, "stacks", "uvloop+httptools", "asyncio+h11", "cpu_us_per_request")
    rps = _mean_ratio(s, "stacks", "asyncio+h11", "uvloop+httptools", "rps")
    parser = _mean_ratio(s, "stacks", "uvloop+httptools", "uvloop+h11", "cpu_us_per_request")
    loop = _mean_ratio(s, "stacks", "uvloop+httptools", "asyncio+httptools",
                       "cpu_us_per_request")
    result["stack_conclusion"] = (
        f"Averaged over the cells: asyncio+h11 (uvicorn's pure-Python default) uses {cpu}x the "
        f"server CPU per request of uvloop+httptools, which serves {rps}x the requests/s. "
        f"Most of it is the HTTP parser (h11 costs {parser}x httptools' CPU, both on uvloop); "
        f"the event loop matters less (asyncio costs {loop}x uvloop's CPU, both with "
        "httptools). "
        + ("The measurement supports uvicorn with httptools and uvloop (`uvicorn[standard]`)."
           if cpu > 1 and rps > 1 else "The measurement does not clearly favour uvloop+httptools."))


# -- main --------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="aiohttp vs httpx; uvicorn stacks.")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--render", action="store_true",
                   help="rewrite the doc sections from --out without measuring")
    p.add_argument("--serve-tiny", nargs=3, metavar=("PORT", "LOOP", "HTTP"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 2
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    concs = [int(c) for c in args.concurrency.split(",")]
    info = benchdoc.machine(PACKAGES)
    here = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="interlock-httpbench-") as tmp:
        workdir = Path(tmp)
        servers: dict[str, overhead.Server] = {}
        try:
            port = overhead.free_port()
            servers["fake"] = overhead.start("fake", [
                sys.executable, str(Path(overhead.__file__).resolve()), "--serve-fake",
                str(port)], port, "/", workdir)
            for loop, http in STACKS:
                port = overhead.free_port()
                name = f"{loop}+{http}"
                servers[name] = overhead.start(name, [sys.executable, here, "--serve-tiny",
                                                      str(port), loop, http], port, "/", workdir)
            for server in servers.values():
                overhead.wait_healthy(server, 30)
            url = f"http://127.0.0.1:{servers['fake'].port}/openai/v1/chat/completions"
            clients = uvloop.run(compare_clients(url, concs, args.requests, args.rounds))
            stacks = {k: v for k, v in servers.items() if k != "fake"}
            stack_rows = uvloop.run(compare_stacks(stacks, concs, args.requests, args.rounds))
        finally:
            for server in servers.values():
                overhead.stop(server)
    info["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    result = {"machine": info,
              "config": {"requests": args.requests, "rounds": args.rounds, "concurrency": concs},
              "clients": clients, "stacks": stack_rows}
    conclusions(result)
    return result


def main() -> None:
    args = parse_args()
    if args.serve_tiny:
        port, loop, http = args.serve_tiny
        serve_tiny(int(port), loop, http)
        return
    if args.render:
        result = json.loads(args.out.read_text())
        conclusions(result)
    else:
        result = run(args)
    print("\n".join(_table(result["clients"], "client", "client CPU µs/req")))
    print(result["client_conclusion"])
    print("\n".join(_table(result["stacks"], "stack", "server CPU µs/req")))
    print(result["stack_conclusion"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_doc:
        benchdoc.replace_section("HTTP client choice", client_section(result))
        benchdoc.replace_section("Server stack choice", stack_section(result))


if __name__ == "__main__":
    main()
