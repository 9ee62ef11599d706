"""The Gemini API adapter: generateContent, streamGenerateContent and
batchEmbedContents (v1beta).

Translates a neutral `ChatRequest` into a GenerateContentRequest, the answer
back into a `ChatResponse` or `StreamDelta`s, and Google's error bodies
(`{"error": {"code", "message", "status", "details"}}`) into `interlock.errors`.

Choices worth knowing:
- The key travels in the `x-goog-api-key` header, never in the URL, so a logged
  URL cannot leak it.
- Tool parameter schemas go in `parameters` (an OpenAPI subset every Gemini model
  accepts), cleaned of the JSON Schema keys it rejects; it takes an enum of
  strings only, so other enums become a note in the description. A `json_schema`
  response format goes in `responseJsonSchema`, which takes JSON Schema as it is
  (`additionalProperties`, `$ref`, type lists), so strict OpenAI schemas pass
  unchanged instead of through a lossy conversion.
- http(s) image URLs become `fileData` parts with a media type guessed from the
  file extension (image/jpeg when unknown); Gemini fetches them itself, and
  older models accept only Files API URIs there.
- Tool call ids: Gemini's own `id` when it sends one, else `call_<n>_<hash>`
  (the hash over the answer's `responseId` and the call), the same for a
  streamed and a whole answer, and new in each answer.
- Gemini 3 models want the `thoughtSignature` of earlier function calls back. A
  call's signature travels with it (to clients as Google's OpenAI-compatible
  `extra_content.google.thought_signature`); a replayed call without one (from
  another provider, or a client that dropped it) carries Google's documented
  `skip_thought_signature_validator` placeholder.
- With `n` > 1 Gemini generates several candidates; only the first is returned.
- OpenAI's `logprobs` and `top_logprobs` become `responseLogprobs` and `logprobs`
  (the number of alternatives a token gets), and a candidate's `logprobsResult`
  comes back in OpenAI's `logprobs` shape, chunk by chunk when streamed.
- OpenAI's `reasoning_effort` becomes a `thinkingConfig` (`interlock.reasoning_effort`):
  `thinkingLevel` for Gemini 3 and later, `thinkingBudget` before them; an
  explicit `thinking_config` wins.
- OpenAI's `web_search_options` turns on grounding with Google Search
  (`googleSearch`; its context size and location have no Gemini counterpart),
  and the grounding's supported segments come back as OpenAI `url_citation`
  annotations (byte offsets turned into characters); the searches billed
  (each query from Gemini 3 on, the grounded prompt before) are
  `Usage.web_searches`.
- Embeddings go through batchEmbedContents, one request per input and up to
  `EMBED_BATCH` inputs per call. Its answer carries no token count; usage is
  estimated, and the result marked `usage_estimated` for the ledger row.

Where each part lives: `adapter` (the calls), `call` (URL, headers, body of
one call), `request` and `contents` (request translation), `schema` (tool
schemas cut to Gemini's OpenAPI subset), `response`, `stream` (chunks ->
deltas), `error_mapping` and `model_versions`. The names below are the
package's surface; `registry` takes `GeminiAdapter` from here.

Imports: `adapters.gemini.*`.
"""

from interlock.adapters.gemini.adapter import EMBED_BATCH, GeminiAdapter, prepare_call
from interlock.adapters.gemini.call import PROVIDER, GeminiCall
from interlock.adapters.gemini.contents import SKIP_SIGNATURE
from interlock.adapters.gemini.error_mapping import classify, error_from_response
from interlock.adapters.gemini.request import build_body, build_embedding_body
from interlock.adapters.gemini.response import (
    grounded_citations,
    map_finish,
    openai_logprobs,
    parse_embeddings,
    parse_response,
    parse_usage,
)
from interlock.adapters.gemini.schema import clean_schema
from interlock.adapters.gemini.stream import StreamState

__all__ = [
    "EMBED_BATCH",
    "PROVIDER",
    "SKIP_SIGNATURE",
    "GeminiAdapter",
    "GeminiCall",
    "StreamState",
    "build_body",
    "build_embedding_body",
    "classify",
    "clean_schema",
    "error_from_response",
    "grounded_citations",
    "map_finish",
    "openai_logprobs",
    "parse_embeddings",
    "parse_response",
    "parse_usage",
    "prepare_call",
]
