"""POST /v1/embeddings: OpenAI JSON in, the gateway, OpenAI JSON out.

The openai SDKs ask for base64 unless told otherwise; the providers are asked
for floats, and the answer is encoded as the client asked.

Imports: the standard library, `gateway`, `openai_embeddings`, `errors`,
`server.asgi_io`, `server.auth`, `server.disconnect`.
"""

from __future__ import annotations

import logging
import time

from interlock.errors import InterlockError
from interlock.gateway import Gateway, new_request_id
from interlock.openai_embeddings import embedding_dict, parse_embedding_request, wants_base64
from interlock.server.asgi_io import (
    ANSWERED,
    Receive,
    Scope,
    Send,
    meta_headers,
    read_json,
    send_error,
    send_json,
)
from interlock.server.auth import caller_key_id, check_model
from interlock.server.chat import refuse
from interlock.server.disconnect import Disconnected, race_disconnect

log = logging.getLogger("interlock.server")


class EmbeddingsEndpoint:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int) -> None:
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.perf_counter()
        body = await read_json(receive, send, self.max_body_bytes, scope)
        if body is ANSWERED:
            return
        try:
            request = parse_embedding_request(body)
            request.routing = self.gateway.bounded_for_client(request.routing)
            check_model(scope, request.model)
        except InterlockError as exc:
            await refuse(self.gateway, scope, send, exc, body, prefix="embd-")
            return
        request_id = new_request_id("embd-")
        try:
            done = await race_disconnect(self.gateway.embed(
                request, request_id=request_id,
                key_id=caller_key_id(scope), arrived=arrived),
                receive)
        except InterlockError as exc:
            await send_error(send, exc, meta_headers(exc))
            return
        except Disconnected:
            log.info("client disconnected; request %s cancelled", request_id)
            return
        await send_json(send, 200, embedding_dict(done.result, model=done.model,
                                                  base64_out=wants_base64(body)),
                        done.meta.headers())
