"""Python opcodes per request, by module and function: where a request's work goes.

    .venv/bin/python benchmarks/opcodes.py [--app interlock] [--mode stream]
                                           [--requests 300] [--first-byte] [--top 40]

Instruction counts (benchmarks/instructions.py) say how much a request costs;
this says where, in Python's own terms. Each app is driven in this process, as
instructions.py drives it, against the fake upstream in another process, and a
`sys.settrace` opcode tracer counts the opcodes each code object runs over
`--requests` requests, after a warm-up. With `--first-byte`, requests go one at
a time and only what runs before the first response body is sent is counted:
the work on the time to the first token (or the whole answer, non-stream).

Counts depend on how the fake's events coalesce into network reads, which
depends on timing: aiohttp's share moves between runs, Interlock's own hardly.
A tool for finding work to cut, not a benchmark with a target. Imports:
uvloop, the standard library, benchmarks/instructions.py, benchmarks/overhead.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop

import instructions
import overhead

Counts = collections.Counter[tuple[str, str]]


def _where(path: str) -> str:
    return path.split("site-packages/")[-1].split("src/")[-1]


class _Tracer:
    """Counts opcodes per (file, function) while `on`."""

    def __init__(self) -> None:
        self.counts: Counts = collections.Counter()
        self.on = True

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode" and self.on:
            code = frame.f_code
            name = code.co_name
            if code.co_filename == "<string>":  # dataclass-made methods: name the class
                name = f"{type(frame.f_locals.get('self')).__name__}.{name}"
            self.counts[(_where(code.co_filename), name)] += 1
        return self


async def _count(app_name: str, stream: bool, requests: int, first_byte: bool,
                 upstream: str) -> Counts:
    app, model, headers = instructions._app(app_name, upstream, Path(tempfile.mkdtemp()))
    lifespan = instructions._Lifespan(app)
    await lifespan.send("startup")
    tracer = _Tracer()
    body = overhead.body(model, stream)
    one = instructions._requester(app, body, headers, lifespan.state)
    if first_byte:
        async def until_body(scope: Any, receive: Any, send: Any) -> None:
            async def wrapped(message: Any) -> None:
                if message["type"] == "http.response.body":
                    tracer.on = False
                await send(message)
            await app(scope, receive, wrapped)

        traced = instructions._requester(until_body, body, headers, lifespan.state)

        async def one_traced() -> int:
            tracer.on = True
            return await traced()
    concurrency = 1 if first_byte else instructions.CONCURRENCY

    async def run(count: int, call: Any) -> None:
        left = count

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                if await call() != 200:
                    raise RuntimeError(f"{app_name} answered an error")

        await asyncio.gather(*(client() for _ in range(concurrency)))

    await run(100, one)
    sys.settrace(tracer)
    await run(requests, one_traced if first_byte else one)
    sys.settrace(None)
    await lifespan.send("shutdown")
    return tracer.counts


def report(counts: Counts, requests: int, top: int) -> str:
    total = sum(counts.values())
    by_file: collections.Counter[str] = collections.Counter()
    for (path, _), n in counts.items():
        by_file[path] += n
    lines = [f"opcodes per request: {total / requests:,.0f}", "", "by module:"]
    lines += [f"{n / requests:>9,.0f}  {path}" for path, n in by_file.most_common(top)]
    lines += ["", "by function:"]
    lines += [f"{n / requests:>9,.0f}  {path.split('/')[-1]}:{name}"
              for (path, name), n in counts.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--app", choices=instructions.APPS, default="interlock")
    p.add_argument("--mode", choices=instructions.MODES, default="stream")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--first-byte", action="store_true",
                   help="one request at a time; count only until the first body is sent")
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="interlock-opcodes-") as tmp:
        port = overhead.free_port()
        fake = overhead.start("fake", [sys.executable, str(Path(overhead.__file__)),
                                       "--serve-fake", str(port)], port, "/", Path(tmp))
        try:
            overhead.wait_healthy(fake, 30)
            counts = uvloop.run(_count(args.app, args.mode == "stream", args.requests,
                                       args.first_byte,
                                       f"http://127.0.0.1:{port}/openai/v1"))
        finally:
            overhead.stop(fake)
    print(report(counts, args.requests, args.top))


if __name__ == "__main__":
    main()
