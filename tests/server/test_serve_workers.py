"""`interlock serve --workers 2`: the workers answer, each writes its rows (from its
own ledger child) into one SQLite file, a shutdown leaves every row written, and a
stream still running at the drain's end is ended cleanly by its worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from tests.server.gateways import (
    MASTER_KEY,
    free_port,
    ledger_rows,
    three_provider_config,
    wait_ready,
)

from interlock.testing import FakeUpstream
from interlock.testing.script import Fault, Reply

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
# The worker processes are counted through /proc (Linux).
pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                                reason="counts processes through Linux's /proc")


async def _ask(http: httpx.AsyncClient, url: str, i: int) -> int:
    body = {"model": "budget", "messages": [{"role": "user", "content": f"hello {i}"}],
            "stream": i % 2 == 0}
    answer = await http.post(url + "/v1/chat/completions", json=body, headers=AUTH)
    return answer.status_code


def _workers(pid: int) -> int:
    """How many worker processes uvicorn has spawned under `pid` (not its
    multiprocessing resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes() for c in children)


def _serve_two_workers(fake_upstream: FakeUpstream, tmp_path: Path,
                       drain: float) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`interlock serve --workers 2` on the fake upstream: the process, its URL
    and its SQLite ledger."""
    config = three_provider_config(fake_upstream)
    database = tmp_path / "ledger.sqlite"
    config["ledger"] = {"database": str(database)}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "interlock.cli.main", "serve", "--config", str(path),
         "--port", str(port), "--workers", "2", "--drain-timeout", str(drain)],
        cwd=tmp_path, env=dict(os.environ), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", database


def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    """Ctrl-C, as a terminal sends it; the server's stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def test_two_workers_answer_and_every_row_reaches_the_shared_ledger(
        fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    proc, url, database = _serve_two_workers(fake_upstream, tmp_path, drain=5)
    stderr = b""
    try:
        wait_ready(url, proc)
        assert _workers(proc.pid) == 2

        async def drive() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as http:
                return await asyncio.gather(*(_ask(http, url, i) for i in range(40)))

        assert asyncio.run(drive()) == [200] * 40
    finally:
        stderr = _stop(proc)
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    deadline = time.monotonic() + 10
    while len(rows := ledger_rows(database)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)  # a worker's child may commit its last batch just after exit
    assert len(rows) == 40
    assert {r["routed_group"] for r in rows.values()} == {"budget"}
    assert sum(r["stream"] for r in rows.values()) == 20


def test_a_worker_ends_a_stream_cut_by_the_drain_deadline_with_an_error_and_done(
        fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    # uvicorn builds the workers' servers itself; the drain was told of shutdown
    # only by a server of Interlock's, so under --workers the stream was cut
    # mid-body (no error event, no [DONE], the chunked body never ended).
    proc, url, database = _serve_two_workers(fake_upstream, tmp_path, drain=1)
    # About 19 chunks 0.25 s apart: ~5 s of stream, far past the 1 s drain.
    fake_upstream.reply(Reply(text="One two three four five six seven eight nine ten "
                                   "eleven twelve thirteen.", chunk_chars=4))
    fake_upstream.script(Fault(chunk_interval=0.25), provider="gemini")
    lines: list[str] = []
    signalled = False
    try:
        wait_ready(url, proc)
        with httpx.stream("POST", url + "/v1/chat/completions", headers=AUTH, timeout=10,
                          json={"model": "cost-optimized", "stream": True,
                                "messages": [{"role": "user", "content": "hello"}]}) as resp:
            for line in resp.iter_lines():
                lines.append(line)
                if '"content"' in line and not signalled:
                    proc.send_signal(signal.SIGINT)  # shutdown begins mid-stream
                    signalled = True
            # Reaching here without httpx.RemoteProtocolError: the chunked body ended.
    finally:
        stderr = _stop(proc)
    events = [line for line in lines if line]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][len("data: "):])["error"]
    assert "shutting down" in error["message"], error
    deadline = time.monotonic() + 10
    while not (rows := ledger_rows(database)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(r["status"], r["error_class"]) for r in rows.values()] == [
        ("error", "GatewayShuttingDown")], stderr.decode(errors="replace")[-2000:]
