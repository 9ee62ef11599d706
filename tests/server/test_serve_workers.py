"""`interlock serve --workers 2`: the workers answer, each writes its rows (from its
own ledger child) into one SQLite file, and a shutdown leaves every row written."""

from __future__ import annotations

import asyncio
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


def test_two_workers_answer_and_every_row_reaches_the_shared_ledger(
        fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    config = three_provider_config(fake_upstream)
    database = tmp_path / "ledger.sqlite"
    config["ledger"] = {"database": str(database)}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "interlock.cli.main", "serve", "--config", str(path),
         "--port", str(port), "--workers", "2", "--drain-timeout", "5"],
        cwd=tmp_path, env=dict(os.environ), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_ready(url, proc)
        assert _workers(proc.pid) == 2

        async def drive() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as http:
                return await asyncio.gather(*(_ask(http, url, i) for i in range(40)))

        assert asyncio.run(drive()) == [200] * 40
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    deadline = time.monotonic() + 10
    while len(rows := ledger_rows(database)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)  # a worker's child may commit its last batch just after exit
    assert len(rows) == 40
    assert {r["routed_group"] for r in rows.values()} == {"budget"}
    assert sum(r["stream"] for r in rows.values()) == 20
