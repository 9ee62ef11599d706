"""A Ctrl-C sent once `interlock serve` has said it serves stops it.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main
thread is, and one raised inside a weakref callback is printed and dropped.
uvicorn.run left SIGINT to that handler until its server set its own, after
the start line: on a busy machine one Ctrl-C in ten was lost there and the
gateway served on (a suite run hung on it). The child below lands its SIGINT
in a weakref callback at the moment the start line is said, every time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.server.gateways import free_port

_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                print("shut down", flush=True)
                return
"""

_CHILD = """
import os, signal, sys, weakref
from interlock.cli.uvicorn_run import serve_until_stopped
import asgi_app

class Held:
    pass

def say_started():
    held = Held()
    # The signal arrives while the finaliser runs: a KeyboardInterrupt raised
    # there would be printed as "Exception ignored" and lost.
    weakref.finalize(held, os.kill, os.getpid(), getattr(signal, sys.argv[3]))
    del held
    print("serving", flush=True)

if __name__ == "__main__":  # --workers spawns processes that import this file
    workers = int(sys.argv[2])
    serve_until_stopped("asgi_app:app" if workers > 1 else asgi_app.app, workers=workers,
                        say_started=say_started, host="127.0.0.1", port=int(sys.argv[1]),
                        lifespan="on", log_level="warning")
    print("stopped", flush=True)
"""


@pytest.mark.parametrize(("workers", "sent"), [(1, "SIGINT"), (2, "SIGINT"), (1, "SIGTERM")])
def test_a_ctrl_c_as_the_start_line_is_said_stops_the_server(tmp_path: Path, workers: int,
                                                            sent: str) -> None:
    (tmp_path / "asgi_app.py").write_text(textwrap.dedent(_APP))
    (tmp_path / "child.py").write_text(textwrap.dedent(_CHILD))
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    # A session of its own, so that its workers are killed with it if it hangs
    # (they hold its output pipes open).
    child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(free_port()),
                              str(workers), sent], env=env, cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        out, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # still serving: the Ctrl-C was lost
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        pytest.fail(f"the server ignored a Ctrl-C sent as it said it serves: {err[-2000:]}")
    # Stopped the graceful way: the lifespan shut down (in one process; workers
    # may be stopped before they start), and the process ended by itself.
    lines = out.splitlines()
    expected = ["serving", "shut down", "stopped"]
    assert (lines if workers == 1 else [n for n in lines if n != "shut down"]) == (
        expected if workers == 1 else ["serving", "stopped"]), (out, err)
    assert "Exception ignored" not in err and "Traceback" not in err, err
