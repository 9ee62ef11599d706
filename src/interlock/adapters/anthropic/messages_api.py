"""What the Messages API fixes and every part of the Anthropic adapter uses:
the provider's name, the API version, the default `max_tokens`, and the tool
through which OpenAI's JSON mode reaches Claude.

Imports: nothing of Interlock's.
"""

from __future__ import annotations

PROVIDER = "anthropic"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

# OpenAI's JSON mode (response_format json_object) as a tool Claude must call:
# its input, any JSON object, is the answer.
JSON_ANSWER_TOOL = "json_answer"
JSON_ANSWER = {"name": JSON_ANSWER_TOOL,
               "description": "Give your whole answer as this tool's input: one JSON object.",
               "input_schema": {"type": "object"}}
JSON_CHOICE = {"type": "tool", "name": JSON_ANSWER_TOOL}
