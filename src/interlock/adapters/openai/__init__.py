"""The adapter for OpenAI's chat-completions API and every service that copies it.

One module serves OpenAI, OpenRouter, Groq, Together, DeepSeek, vLLM, Ollama and
the llama.cpp server: they differ in base URL and key, which the deployment
carries, and in the body fields they take beyond the common ones
(`server_params`: OpenAI's own API refuses vLLM's `top_k`, which vLLM wants;
a field the server refuses is an UnsupportedParameter, or dropped under
drop_params). Here live the request translation (neutral `ChatRequest` -> OpenAI JSON),
the response and stream translation back, the embeddings call, and OpenAI's
error recognisers (context window, content policy, quota, rate-limit reset headers).

`max_tokens` or `max_completion_tokens`: OpenAI deprecated `max_tokens` and its
reasoning models (o1, o3, o4, gpt-5 families) reject it, but every other
OpenAI-compatible server (vLLM, Ollama, llama.cpp, Groq, Together, older
deployments) knows `max_tokens`, and OpenAI's own non-reasoning models still take
it. So `max_tokens` is sent everywhere except to the reasoning families on the
`openai` provider itself. A deployment can force either name with
`max_tokens_param` in its extra params; a caller who passes one of the two names
in `request.extra` gets exactly that.

Where each part lives: `adapter` (the calls), `endpoint` (URL, headers and
labels per deployment), `request`, `server_params` (which extra fields
each server takes), `response`, `stream_reading` (a streamed
body, a network read at a time), `stream_chunks` (one chunk -> one delta) and
`error_mapping`. The names below are the package's surface; `registry` takes
`OpenAIAdapter` from here.

Imports: `adapters.openai.*`.
"""

from interlock.adapters.openai.adapter import OpenAIAdapter
from interlock.adapters.openai.error_mapping import classify_error, parse_duration, retry_after
from interlock.adapters.openai.request import (
    build_body,
    content_json,
    message_json,
    response_format_json,
    tool_choice_json,
    tool_json,
)
from interlock.adapters.openai.response import map_finish, parse_response, parse_usage
from interlock.adapters.openai.stream_chunks import chunk_delta, plain_text

__all__ = [
    "OpenAIAdapter",
    "build_body",
    "chunk_delta",
    "classify_error",
    "content_json",
    "map_finish",
    "message_json",
    "parse_duration",
    "parse_response",
    "parse_usage",
    "plain_text",
    "response_format_json",
    "retry_after",
    "tool_choice_json",
    "tool_json",
]
