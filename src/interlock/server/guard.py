"""The last line of defence: an unexpected exception becomes an OpenAI-format 500.

A bug must never show a client a traceback or uvicorn's plain-text error. If
the response has not started, the client gets `{"error": {...}}` with status
500 and a request-safe message; the traceback goes to the log only. If it has
started (a stream), the connection is closed, which clients see as an error,
never as a complete answer.

Imports: the standard library, `server.asgi_io`.
"""

from __future__ import annotations

import logging

from interlock.server.asgi_io import ASGIApp, Message, Receive, Scope, Send, send_plain_error

log = logging.getLogger("interlock.server")


class ErrorGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error while serving %s %s", scope.get("method"),
                          scope.get("path"))
            if started:
                raise  # the server closes the connection: never a silent truncation
            await send_plain_error(
                send, 500, "Interlock hit an unexpected internal error; it has been logged. "
                "Retry the request, and report it if it persists.",
                type_="internal_error", code="internal_error")
