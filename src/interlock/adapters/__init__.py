"""Provider adapters: one package per provider behind the `Adapter` protocol.

The only place that knows provider wire formats and names (house rule 1):
the packages `openai`, `anthropic` and `gemini` (each split into request
translation, response translation, stream decoding and error mapping), the
shared `base` and `http` pieces, `mock`, and `registry` (provider name ->
adapter, base URL and key variables).

Imports: `types`, `errors`, `catalog`, aiohttp, orjson. Never `dispatch`,
`routing`, `costs`, `gateway` or `server`.
"""
