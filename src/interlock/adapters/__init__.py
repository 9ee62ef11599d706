"""Provider adapters: one module per provider behind the `Adapter` protocol.

The only place that knows provider wire formats and names (house rule 1):
`openai`, `anthropic`, `gemini`, the shared `base` and `http` pieces, and
`registry` (provider name -> adapter, base URL and key variables).

Imports: `types`, `errors`, `catalog`, aiohttp, orjson. Never `dispatch`,
`routing`, `costs`, `gateway` or `server`.
"""
