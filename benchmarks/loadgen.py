"""A closed-loop HTTP load generator and the statistics the benchmarks report.

`run_batch` keeps `concurrency` requests in flight until `count` requests are
done or the deadline passes, and returns one `Sample` per request: the full
latency and, for SSE, the time to the first `data:` line. Used by
benchmarks/overhead.py and benchmarks/http_clients.py; not part of the package.

Imports: aiohttp, the standard library.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

# One chat request of the size a chat client typically sends: a system prompt
# and a user turn of a few sentences.
CHAT_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant. Answer in one short paragraph."},
    {"role": "user", "content": (
        "Summarise the trade-offs between retrying a failed request on the same provider "
        "and falling back to a different provider, in terms of latency, cost and the "
        "chance of hitting the same fault again.")},
]


@dataclass(frozen=True)
class Target:
    """One HTTP endpoint under load and the body it is sent."""

    name: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    latency: float  # seconds until the whole body was read
    ttft: float | None  # seconds until the first SSE data line (stream only)
    ok: bool
    overhead_header_ms: float | None = None  # x-interlock-overhead-ms, when sent
    error: str | None = None  # the status or exception of a failed request


@dataclass
class Batch:
    samples: list[Sample]
    elapsed: float  # wall-clock seconds for the batch


def new_session(limit: int, timeout: float = 30.0) -> aiohttp.ClientSession:
    # Idle connections are dropped after 4 s, before uvicorn's default 5 s
    # keep-alive closes them on the server side; reusing a connection the server
    # is closing fails with ServerDisconnectedError, which is not the target's fault.
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=None, keepalive_timeout=4.0)
    return aiohttp.ClientSession(connector=connector,
                                 timeout=aiohttp.ClientTimeout(total=timeout))


def _header_ms(resp: aiohttp.ClientResponse) -> float | None:
    value = resp.headers.get("x-interlock-overhead-ms")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def one_request(session: aiohttp.ClientSession, target: Target, stream: bool) -> Sample:
    start = time.perf_counter()
    ttft: float | None = None
    try:
        async with session.post(target.url, data=target.body, headers=target.headers) as resp:
            if stream:
                async for line in resp.content:
                    if ttft is None and line.startswith(b"data:"):
                        ttft = time.perf_counter() - start
            else:
                await resp.read()
            ok = resp.status == 200 and (ttft is not None or not stream)
            hdr = _header_ms(resp)
            error = None if ok else f"HTTP {resp.status}"
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Sample(time.perf_counter() - start, None, False, error=type(exc).__name__)
    return Sample(time.perf_counter() - start, ttft, ok, hdr, error)


async def closed_loop(call: Callable[[], Awaitable[Sample]], *, count: int, concurrency: int,
                      deadline: float) -> Batch:
    """Each of `concurrency` workers awaits `call()` again as soon as its previous call
    finished, until `count` calls are done or `deadline` (a perf_counter time).

    The client's own garbage collector is kept out of the measurement. A run keeps
    every sample until its end, and a full collection walks them all: late in a
    run of overhead.py one took about 100 ms, stalling every request in flight
    and putting a 100 ms P99 on whichever target it fell in. So the batch runs
    with the collector off, after a collection that freezes what is alive
    (samples so far are never walked again)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return await _closed_loop(call, count=count, concurrency=concurrency,
                                  deadline=deadline)
    finally:
        gc.enable()


async def _closed_loop(call: Callable[[], Awaitable[Sample]], *, count: int,
                       concurrency: int, deadline: float) -> Batch:
    samples: list[Sample] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            samples.append(await call())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return Batch(samples, time.perf_counter() - start)


async def run_batch(session: aiohttp.ClientSession, target: Target, *, count: int,
                    concurrency: int, stream: bool, deadline: float) -> Batch:
    return await closed_loop(lambda: one_request(session, target, stream), count=count,
                             concurrency=concurrency, deadline=deadline)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """P50/P95/P99 and mean, in milliseconds, of values given in seconds."""
    ms = [v * 1000 for v in values_s]
    out: dict[str, float | None] = {f"p{q}": _round(percentile(ms, q)) for q in (50, 95, 99)}
    out["mean"] = _round(sum(ms) / len(ms)) if ms else None
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
