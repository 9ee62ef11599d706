"""The Anthropic Messages API adapter (`POST {base}/v1/messages`).

Translates a neutral `ChatRequest` into a Messages API body, and the answer
(a message object, or the streamed `message_start` ... `message_stop` events)
back into a `ChatResponse` / `StreamDelta`s. Errors are mapped here, at the
boundary: Anthropic's `{"type": "error", "error": {"type", "message"}}` bodies,
its `event: error` stream frames, and its rate-limit headers.

Choices worth knowing:
- System messages go top-level as `system`; a request of system messages only
  (OpenAI answers one) sends them as the user's turn, since Anthropic refuses a
  request without messages.
- `max_tokens` is required by Anthropic: request.max_tokens, else
  `max_completion_tokens` from `extra`, else deployment.max_output_tokens, else
  `DEFAULT_MAX_TOKENS` (4096).
- `response_format`: `json_schema` is sent as `output_config.format`
  (Anthropic's structured outputs, generally available on the Claude 4.5+
  models; older models answer 400, which surfaces as BadRequest). `json_object`
  has no Anthropic equivalent (structured outputs take no schema-less object),
  so Claude is made to call one tool, `json_answer`, whose input is any JSON
  object, and that input comes back as the answer's text (streamed as it is
  written) with finish_reason "stop", as OpenAI's JSON mode answers. A request
  with tools of its own (or web search), or with thinking (which cannot go with
  a forced tool), cannot take that way: `UnsupportedParameter`, unless
  drop_params. `text` is a no-op.
- Extra OpenAI parameters Anthropic cannot take (frequency_penalty, seed,
  logprobs, n > 1, ...) raise `UnsupportedParameter` unless drop_params; values
  that change nothing (n=1, a zero penalty, logprobs=false, null) are accepted.
  Anthropic's own `top_k` and `thinking` pass through from `extra`. A `stop`
  sequence of only whitespace (Anthropic answers 400) is refused the same way;
  drop_params sends the others.
- OpenAI's `reasoning_effort` turns thinking on with that effort's budget
  (`interlock.reasoning_effort`; "none" leaves it off, an explicit `thinking` wins); a
  `max_tokens` Interlock chose grows by the budget (an explicit `thinking`'s
  too), one the caller set must exceed it.
- OpenAI's `web_search_options` adds Anthropic's web search tool (at most 1, 3
  or 5 searches for a low, medium or high `search_context_size`); the text
  blocks that cite search results come back as OpenAI `url_citation`
  annotations over their span, and the searches as `Usage.web_searches`.
- Thinking: the text is the OpenAI-style `reasoning_content`; each block, signed,
  is also returned whole in `thinking_blocks` (LiteLLM's field; streamed once
  the block ends). An assistant turn sent back with `thinking_blocks` starts
  with them, as Anthropic requires in a tool loop with thinking on.
- Consecutive same-role turns are merged (Anthropic requires alternation);
  `tool` messages become `tool_result` blocks of one user turn, placed before
  its other blocks as Anthropic requires; a result of several parts keeps them
  as separate blocks.
- Images: URLs and base64 data URLs of the four types Anthropic takes (jpeg, png,
  gif, webp; `image/jpg` is sent as `image/jpeg`); another type is a 400 here.
- `deployment.extra` may set `anthropic_version` (default 2023-06-01),
  `anthropic_beta` (sent as the `anthropic-beta` header) and `extra_headers`.
- Usage: neutral input_tokens counts all input (uncached + cache reads +
  cache writes); cached_input_tokens and cache_write_tokens are subsets.
- `service_tier`: OpenAI's "default" is sent as Anthropic's "standard_only" and
  "priority" as "auto" (see `SERVICE_TIERS`); the tier that served the call
  (`usage.service_tier`) comes back as the answer's `service_tier`, in OpenAI's
  names ("standard" as "default").

Where each part lives: `adapter` (the call), `request` and `messages` (request
translation), `response` (the whole answer, usage, finish reasons), `stream`
(server-sent events -> deltas), `error_mapping` (error bodies, rate-limit
headers), `messages_api` (the names they all use). The names below are the
package's surface; `registry` takes `AnthropicAdapter` from here.

Imports: `adapters.anthropic.*`.
"""

from interlock.adapters.anthropic.adapter import AnthropicAdapter
from interlock.adapters.anthropic.error_mapping import (
    classify,
    error_from_body,
    error_from_response,
    ratelimit_reset_after,
)
from interlock.adapters.anthropic.messages import translate_messages
from interlock.adapters.anthropic.messages_api import DEFAULT_MAX_TOKENS, JSON_ANSWER_TOOL, PROVIDER
from interlock.adapters.anthropic.request import build_body
from interlock.adapters.anthropic.response import finish_reason, parse_message, parse_usage
from interlock.adapters.anthropic.stream import StreamState

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_ANSWER_TOOL",
    "PROVIDER",
    "AnthropicAdapter",
    "StreamState",
    "build_body",
    "classify",
    "error_from_body",
    "error_from_response",
    "finish_reason",
    "parse_message",
    "parse_usage",
    "ratelimit_reset_after",
    "translate_messages",
]
