"""Response translation: a GenerateContentResponse as a `ChatResponse` (text,
thoughts, function calls with their ids, finish reason, usage, logprobs,
grounding citations), and a BatchEmbedContentsResponse as vectors. The
stream decoder shares the per-candidate pieces.

Imports: orjson, the standard library, `types`, `errors`, `tokens`, `web_search`,
`adapters.base`, `adapters.gemini.*`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.adapters.base import token_count_ok
from interlock.adapters.gemini.call import PROVIDER, GeminiCall
from interlock.adapters.gemini.error_mapping import error_from_object, int_or, malformed
from interlock.adapters.gemini.model_versions import from_gemini_3
from interlock.errors import ContentFiltered
from interlock.tokens import estimate_inputs_tokens
from interlock.types import ChatResponse, EmbeddingResult, FinishReason, ToolCall, Usage
from interlock.web_search import url_citation

_SAFETY_FINISH = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})


def parse_response(data: dict[str, Any], call: GeminiCall) -> ChatResponse:
    """A GenerateContentResponse as a neutral ChatResponse."""
    candidate = first_candidate(data, call)
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    # Each text part by its index among the parts, with where it starts in the
    # answer's text (characters): grounding segments are placed within a part.
    text_parts: dict[int, tuple[int, str]] = {}
    at = 0
    response_id = data.get("responseId")
    for index, part in enumerate((candidate.get("content") or {}).get("parts") or []):
        kind, value = read_part(part, len(calls), response_id)
        if kind == "call":
            calls.append(value)
        elif kind == "thought":
            reasoning.append(value)
        elif kind == "text":
            text.append(value)
            text_parts[index] = (at, value)
            at += len(value)
    grounding = candidate.get("groundingMetadata")
    usage = parse_usage(data.get("usageMetadata"))
    if grounding and usage is not None:
        usage.web_searches = searches_billed(grounding, call.model)
    return ChatResponse(
        id=str(data.get("responseId") or fallback_id()),
        model=str(data.get("modelVersion") or call.model),
        content="".join(text) if text or not calls else None,
        tool_calls=calls,
        finish_reason=map_finish(candidate.get("finishReason"), bool(calls)),
        usage=usage,
        reasoning="".join(reasoning) or None,
        logprobs=openai_logprobs(candidate.get("logprobsResult")),
        annotations=grounded_citations(grounding, "".join(text), text_parts) or None,
    )


def grounded_citations(grounding: Any, text: str,
                       parts: Mapping[int, tuple[int, str]] | None = None
                       ) -> list[dict[str, Any]]:
    """Gemini's grounding (Google Search) as OpenAI url_citation annotations:
    each supported segment of the answer, once for every web source it cites.

    A segment's offsets are UTF-8 bytes within the part `partIndex` names;
    OpenAI's are characters within the whole answer. `parts` gives each text
    part's start in `text` and its own text. A segment naming no part (the
    usual answer of one text part, where the index 0 goes unsaid), or one not
    in `parts` (a stream's chunks, whose grounding is placed over the text so
    far), is placed over `text` as a whole."""
    if not isinstance(grounding, dict):
        return []
    sources = grounding.get("groundingChunks") or []
    # Each part used so far: (its start in `text`, its UTF-8 bytes); -1 is `text`.
    encoded = {-1: (0, text.encode())}
    found: list[dict[str, Any]] = []
    for support in grounding.get("groundingSupports") or []:
        segment = support.get("segment") or {}
        index = segment.get("partIndex")
        if parts is None or not isinstance(index, int) or index not in parts:
            index = -1
        elif index not in encoded:
            encoded[index] = (parts[index][0], parts[index][1].encode())
        base, within = encoded[index]
        start = base + len(within[:int(segment.get("startIndex") or 0)].decode(errors="ignore"))
        end = base + len(within[:int(segment.get("endIndex") or 0)].decode(errors="ignore"))
        for i in support.get("groundingChunkIndices") or []:
            web = (sources[i].get("web") if 0 <= i < len(sources) else None) or {}
            if web.get("uri"):
                found.append(url_citation(start, end, web["uri"], web.get("title") or ""))
    return found


def searches_billed(grounding: dict[str, Any], model: str) -> int:
    """What a grounded answer is billed for: each search query from Gemini 3 on,
    the grounded prompt as one before it."""
    queries = grounding.get("webSearchQueries") or []
    if not queries:
        return 0
    return len(queries) if from_gemini_3(model) else 1


def openai_logprobs(result: Any) -> dict[str, Any] | None:
    """A candidate's `logprobsResult` in OpenAI's `choices[].logprobs` shape: one
    entry per chosen token, with the alternatives Gemini ranked at that step."""
    if not isinstance(result, dict) or not result.get("chosenCandidates"):
        return None
    steps = result.get("topCandidates") or []
    content = []
    for i, chosen in enumerate(result["chosenCandidates"]):
        top = (steps[i].get("candidates") or []) if i < len(steps) else []
        entry = _token_logprob(chosen)
        entry["top_logprobs"] = [_token_logprob(c) for c in top]
        content.append(entry)
    return {"content": content, "refusal": None}


def _token_logprob(candidate: dict[str, Any]) -> dict[str, Any]:
    token = str(candidate.get("token") or "")
    return {"token": token, "logprob": float(candidate.get("logProbability") or 0.0),
            "bytes": list(token.encode())}


def first_candidate(data: dict[str, Any], call: GeminiCall) -> dict[str, Any]:
    if "error" in data:
        raise error_from_object(data["error"], {}, call)
    candidates = data.get("candidates") or []
    if not candidates:
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        if blocked:
            raise ContentFiltered(
                f"gemini blocked the prompt for deployment {call.labels.deployment!r} "
                f"({blocked}).", provider=PROVIDER, deployment=call.labels.deployment,
                status=200)
        raise malformed(call, "the response has no candidates")
    first = candidates[0]
    if not isinstance(first, dict):
        raise malformed(call, "a candidate is not an object")
    return first


def read_part(part: Any, call_index: int, response_id: Any) -> tuple[str, Any]:
    """("text" | "thought" | "call" | "other", value) for one response part."""
    if not isinstance(part, dict):
        return "other", None
    if "functionCall" in part:
        return "call", _tool_call(part["functionCall"], call_index, response_id,
                                  part.get("thoughtSignature"))
    if "text" in part:
        return ("thought" if part.get("thought") else "text"), str(part["text"])
    return "other", None


def _tool_call(fc: dict[str, Any], index: int, response_id: Any,
               signature: Any = None) -> ToolCall:
    name = str(fc.get("name", ""))
    arguments = orjson.dumps(fc.get("args") or {}).decode()
    call_id = fc.get("id") or _call_id(index, name, arguments, response_id)
    return ToolCall(id=str(call_id), name=name, arguments=arguments,
                    thought_signature=str(signature) if signature else None)


def _call_id(index: int, name: str, arguments: str, response_id: Any) -> str:
    # The answer's responseId (a stream's chunks all carry it) makes the id its
    # own: the same call made again in a later turn must not repeat an id, which
    # clients pair results by and Anthropic refuses (on a fallback there).
    # Without one, the call alone, as before.
    seed = f"{response_id}\0{name}\0{arguments}" if response_id else f"{name}\0{arguments}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:10]
    return f"call_{index}_{digest}"


def fallback_id() -> str:
    return f"gemini-{uuid.uuid4().hex}"


def map_finish(reason: str | None, has_calls: bool) -> FinishReason | None:
    if reason is None:
        return "tool_calls" if has_calls else None
    if reason == "STOP":
        return "tool_calls" if has_calls else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _SAFETY_FINISH:
        return "content_filter"
    # MALFORMED_FUNCTION_CALL, OTHER, LANGUAGE, ...: the answer is not usable.
    return "error"


def parse_usage(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=int(meta.get("promptTokenCount") or 0)
        + int(meta.get("toolUsePromptTokenCount") or 0),
        output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_input_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def parse_embeddings(data: dict[str, Any], inputs: list[str], call: GeminiCall) -> EmbeddingResult:
    """A BatchEmbedContentsResponse as vectors in input order, with usage."""
    if "error" in data:
        raise error_from_object(data["error"], {}, call)
    rows = data.get("embeddings")
    if not isinstance(rows, list):
        raise malformed(call, "the response has no embeddings")
    if len(rows) != len(inputs):
        raise malformed(call, f"{len(rows)} embeddings for {len(inputs)} inputs")
    vectors = [_vector(row, call) for row in rows]
    meta = data.get("usageMetadata")
    counted = meta.get("promptTokenCount") if isinstance(meta, dict) else None
    # The API sends no count today; take one if it ever does, else estimate so
    # that the ledger still prices the call.
    tokens = int_or(counted, 0)
    if not token_count_ok(tokens):
        raise malformed(call, f"an embeddings answer with an impossible token count ({tokens})")
    if tokens:
        return EmbeddingResult(vectors, Usage(input_tokens=tokens))
    return EmbeddingResult(vectors, Usage(input_tokens=estimate_inputs_tokens(inputs)),
                           usage_estimated=True)


def _vector(row: Any, call: GeminiCall) -> list[float]:
    values = row.get("values") if isinstance(row, dict) else None
    if not isinstance(values, list) or not values:
        raise malformed(call, "an embedding has no values")
    # bool is an int subclass; a true/false in a vector is a broken answer, not 1.0.
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise malformed(call, "an embedding holds a value that is not a number")
    return [float(v) for v in values]
