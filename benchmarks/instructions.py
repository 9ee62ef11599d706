"""Instructions per request, counted by callgrind: Interlock's gateway app and the floor.

    .venv/bin/python benchmarks/instructions.py [--requests 1000] [--no-doc]

On a shared virtual machine, CPU time per request moves by about 10 % between runs
of the same code, so a change of a few percent cannot be seen in
benchmarks/overhead.py. Instruction counts do not move: valgrind counts what
the program executes, whatever else the machine does. This is the measure to
check a change to the request path with.

Each ASGI app (the floor of benchmarks/passthrough_proxy.py, Interlock with the
ledger off, Interlock with its SQLite ledger) is driven in this process, 16
requests at a time, against the fake upstream in another process (not counted).
The client side of the HTTP connection is left out: both proxies run it on the
same uvicorn code. Each app runs under `valgrind --tool=callgrind` twice, with
`--base` requests and with `--base` + `--requests`; the difference over
`--requests` is the cost of one request, with start-up and warm-up taken out. The
ledger is flushed before each run ends, so its writes are counted too, in the
child process that writes them (children are traced and their counts added).

Needs valgrind. A benchmark, not a test. Imports: orjson, uvloop, yaml, the
standard library, benchmarks/overhead.py, benchmarks/passthrough_proxy.py,
benchmarks/benchdoc.py, and interlock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvloop
import yaml

import benchdoc
import overhead

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "instructions.json"
APPS = ("floor", "interlock-noledger", "interlock")
MODES = ("stream", "non-stream")
CONCURRENCY = 16
PACKAGES = ["interlock", "aiohttp", "orjson", "sqlalchemy"]

Message = MutableMapping[str, Any]


# -- the driver (runs under valgrind) -------------------------------------------

def _app(name: str, upstream: str, workdir: Path) -> tuple[Any, str, list[tuple[bytes, bytes]]]:
    """(ASGI app, model name, extra request headers) for one target."""
    if name == "floor":
        import passthrough_proxy

        return passthrough_proxy.PassThrough(upstream, "sk-dummy"), "bench-model", []
    from interlock.config import load_config
    from interlock.server.app import create_app

    ledger = workdir / "ledger.sqlite" if name == "interlock" else None
    cfg = workdir / f"{name}.yaml"
    config = overhead.interlock_config(upstream, ledger)
    if ledger is not None:
        # Under valgrind the ledger's child process starts and writes ~50 times
        # slower; shutdown must wait for its last rows, not kill it after 5 s.
        config["ledger"]["close_timeout"] = 600
    cfg.write_text(yaml.safe_dump(config))
    auth = f"Bearer {overhead.MASTER_KEY}".encode()
    return create_app(load_config(cfg), server_process=True), "bench", [(b"authorization", auth)]


class _Lifespan:
    """The ASGI lifespan of one app: start it, and later stop it (which flushes
    Interlock's ledger)."""

    def __init__(self, app: Any) -> None:
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._answered = asyncio.Event()
        self.state: dict[str, Any] = {}
        self._task = asyncio.ensure_future(app(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state},
            self._queue.get, self._answer))

    async def _answer(self, message: Message) -> None:
        self._answered.set()

    async def send(self, kind: str) -> None:
        self._answered.clear()
        await self._queue.put({"type": f"lifespan.{kind}"})
        await self._answered.wait()


def _requester(app: Any, body: bytes, headers: list[tuple[bytes, bytes]],
               state: dict[str, Any]) -> Callable[[], Awaitable[int]]:
    """One chat request through the app; returns the HTTP status it answered with."""
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *headers]
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def one() -> int:
        delivered = False
        status = 0

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never  # the client never leaves
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 4000), "state": dict(state)}
        await app(scope, receive, send)
        return status

    return one


async def drive(name: str, stream: bool, count: int, upstream: str, workdir: Path) -> None:
    app, model, headers = _app(name, upstream, workdir)
    lifespan = _Lifespan(app)
    await lifespan.send("startup")
    one = _requester(app, overhead.body(model, stream), headers, lifespan.state)
    left = count

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await one()
            if status != 200:  # counting errors would measure the wrong path
                raise RuntimeError(f"{name} answered HTTP {status}")

    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    await lifespan.send("shutdown")


# -- the counting ---------------------------------------------------------------

def instructions(name: str, mode: str, count: int, upstream: str, workdir: Path) -> int:
    """Instructions the driver and the processes it starts execute to drive `count`
    requests, start-up included: the server's ledger writes from a child process
    (`costs.writer_process`), whose work is part of a request's cost."""
    stem = f"callgrind.{name}.{mode}.{count}"
    argv = ["valgrind", "--tool=callgrind", "--trace-children=yes",
            f"--callgrind-out-file={workdir / stem}.%p.out", sys.executable,
            __file__, "--drive", name, "--mode", mode, "--count", str(count),
            "--upstream", upstream, "--workdir", str(workdir / f"{name}-{mode}-{count}")]
    (workdir / f"{name}-{mode}-{count}").mkdir()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {name} {mode} driver failed:\n{done.stderr[-3000:]}")
    totals = [_total(out) for out in sorted(workdir.glob(f"{stem}.*.out"))]
    if not totals:
        raise RuntimeError(f"no callgrind output for {stem} in {workdir}")
    return sum(totals)


def _total(out: Path) -> int:
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {out}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = benchdoc.machine(PACKAGES)
    with tempfile.TemporaryDirectory(prefix="interlock-instructions-") as tmp:
        workdir = Path(tmp)
        port = overhead.free_port()
        fake = overhead.start("fake", [sys.executable, str(HERE / "overhead.py"), "--serve-fake",
                                       str(port)], port, "/", workdir)
        try:
            overhead.wait_healthy(fake, 30)
            upstream = f"http://127.0.0.1:{port}/openai/v1"
            per: dict[str, dict[str, int]] = {mode: {} for mode in args.modes}
            for mode in args.modes:
                for name in args.apps:
                    low = instructions(name, mode, args.base, upstream, workdir)
                    high = instructions(name, mode, args.base + args.requests, upstream,
                                        workdir)
                    per[mode][name] = round((high - low) / args.requests)
                    print(f"  {mode:10} {name:19} {per[mode][name]:>10,} instructions/request",
                          flush=True)
        finally:
            overhead.stop(fake)
    return {"machine": {**info, "loadavg_1min_end": round(os.getloadavg()[0], 2)},
            "config": {"requests": args.requests, "base": args.base,
                       "concurrency": CONCURRENCY, "valgrind": _valgrind_version()},
            "instructions_per_request": per}


def _valgrind_version() -> str:
    done = subprocess.run(["valgrind", "--version"], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip()


def report_text(result: dict[str, Any]) -> str:
    per = result["instructions_per_request"]
    lines = ["| mode | floor | Interlock, ledger off | Interlock, ledger on | "
             "ledger on / floor |", "|---|---:|---:|---:|---:|"]
    for mode in MODES:
        row = per[mode]
        lines.append(f"| {mode} | {row['floor']:,} | {row['interlock-noledger']:,} | "
                     f"{row['interlock']:,} | {row['interlock'] / row['floor']:.2f}x |")
    return "\n".join(lines)


def doc_section(result: dict[str, Any]) -> str:
    cfg = result["config"]
    return "\n".join([
        "Written by `benchmarks/instructions.py` (JSON: "
        "`benchmarks/results/instructions.json`).",
        "",
        *benchdoc.machine_lines(result["machine"]),
        f"- Each app is driven in process ({cfg['concurrency']} requests at a time, the client "
        "side of HTTP left out) against the fake upstream in another process, under "
        f"callgrind: instructions per request = (count at {cfg['base'] + cfg['requests']} "
        f"requests - count at {cfg['base']}) / {cfg['requests']}, with "
        f"{cfg.get('valgrind') or 'valgrind'}. Instruction counts do not "
        "depend on the machine's load, so this is the figure to check a change with; "
        "`Gateway overhead` above gives the latencies.",
        "",
        report_text(result),
    ])


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"expected some of {', '.join(allowed)}")
        return names
    return parse


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=1000, help="requests counted per app")
    p.add_argument("--base", type=int, default=200, help="requests of the baseline run")
    p.add_argument("--apps", type=_names(APPS), default=list(APPS),
                   help=f"comma-separated, of {', '.join(APPS)} (a subset: no doc written)")
    p.add_argument("--modes", type=_names(MODES), default=list(MODES),
                   help=f"comma-separated, of {', '.join(MODES)} (a subset: no doc written)")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--drive", choices=APPS, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, default="stream", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--upstream", help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.drive:
        uvloop.run(drive(args.drive, args.mode == "stream", args.count, args.upstream,
                         args.workdir))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: this benchmark counts instructions with "
                 "callgrind (Debian: apt install valgrind).")
    result = run(args)
    if args.apps != list(APPS) or args.modes != list(MODES):
        print(json.dumps(result["instructions_per_request"], indent=2))
        return  # a partial run: printed only, the committed figures stay whole
    print(report_text(result))
    benchdoc.publish(result, args.out, "Instructions per request",
                     None if args.no_doc else doc_section(result))


if __name__ == "__main__":
    main()
