"""An unexpected exception becomes an OpenAI-format 500, never a traceback."""

from __future__ import annotations

import json

from interlock.server.guard import ErrorGuard


async def _call(app):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    try:
        await ErrorGuard(app)(scope, receive, send)
    except RuntimeError:
        sent.append({"type": "raised"})
    return sent


async def test_a_bug_before_the_response_becomes_a_json_500():
    async def buggy(scope, receive, send):
        raise RuntimeError("secret internals at line 42")

    sent = await _call(buggy)
    assert sent[0]["status"] == 500
    body = json.loads(sent[1]["body"])
    assert body["error"]["type"] == "internal_error"
    assert "secret internals" not in sent[1]["body"].decode()
    assert "Traceback" not in sent[1]["body"].decode()


async def test_a_bug_after_the_response_started_closes_the_connection():
    async def buggy(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        raise RuntimeError("mid-stream bug")

    sent = await _call(buggy)
    # No second response start and no clean end of body: the server drops the
    # connection, which a client sees as an error, not a complete answer.
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "raised"]


async def test_a_bug_mid_stream_ends_with_an_error_event_not_a_clean_done():
    from interlock.adapters.base import DeltaBatch
    from interlock.gateway import ResponseMeta
    from interlock.routing.decision import RoutingDecision
    from interlock.server.chat import _SseWriter
    from interlock.types import StreamDelta

    class BuggyStream:
        meta = ResponseMeta(request_id="r1", decision=RoutingDecision("m", "m"))

        async def batches(self):
            yield DeltaBatch([StreamDelta(text="hello", model="m")])
            raise KeyError("a bug")

    sent = []

    async def send(message):
        sent.append(message)

    await _SseWriter(send, BuggyStream(), "r1", include_usage=False).run()  # type: ignore[arg-type]
    body = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    assert '"content":"hello"' in body
    error_at = body.index('"error"')
    assert body.endswith("data: [DONE]\n\n") and error_at < body.index("[DONE]")
