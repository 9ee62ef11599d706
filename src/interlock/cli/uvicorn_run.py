"""Running uvicorn so that a Ctrl-C after the start line is never lost.

`uvicorn.run` leaves SIGINT to Python's default handler until its server sets
its own, in the event loop's first step (one process) or when its supervisor
is made (`--workers`). The default handler raises KeyboardInterrupt in whatever
the main thread runs next, and one raised inside a weakref callback or a
`__del__` is printed as "Exception ignored" and dropped. On a busy machine a
Ctrl-C sent just after `interlock serve` said it was serving was lost that way
about one time in ten, and the gateway served on until a second one.

Here the server's own handler (`Server.handle_exit`, which only sets its stop
flag; for SIGTERM too) or the supervisor's (which queues the signal) is in
place before the start line is said, so a Ctrl-C from then on stops the server as one sent later
does: in-flight requests drain, the lifespan shuts down. This builds what
`uvicorn.run` builds for these two cases (no reload, no Unix socket), and
exits with uvicorn's code 3 when one process could not start, as it does.

Imports: uvicorn, the standard library.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

# uvicorn's exit code for a server that could not start (`uvicorn.main`).
STARTUP_FAILURE = 3


def serve_until_stopped(app: Any, *, workers: int, say_started: Callable[[], None],
                        **options: Any) -> None:
    """Serve `app` (an ASGI app, or with `workers` > 1 an import string) with
    uvicorn's `options`, calling `say_started` once a Ctrl-C would stop it."""
    config = uvicorn.Config(app, workers=workers, **options)
    if workers > 1:
        sockets = [config.bind_socket()]
        supervisor = Multiprocess(config, sockets=sockets)  # queues signals from here on
        say_started()
        supervisor.run()
        return
    config.load_app()
    server = uvicorn.Server(config)
    # SIGINT's handler is then not the default one, so asyncio's runner sets none
    # of its own either (it would cancel the serving task, not let it drain).
    # SIGTERM too: its default ends the process without the lifespan's shutdown.
    previous = {sig: signal.signal(sig, server.handle_exit)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        say_started()
        server.run()  # a second Ctrl-C makes it stop without draining, as uvicorn's does
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        sys.exit(STARTUP_FAILURE)
