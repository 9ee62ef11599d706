"""The OpenAI-compatible HTTP gateway as a plain ASGI app: `app` (routes,
lifespan), `chat` (/v1/chat/completions, SSE), `auth`, `guard` (no traceback
ever reaches a client) and `asgi_io` (reading and writing at the ASGI level).

Imports: `gateway`, `config`, `openai_request`, `openai_response`, `errors`,
`types`. Only `cli.serve` (and tests) import `server`; the library facades do not.
"""
