"""OpenAI's `web_search_options`, read once for the adapters that translate it.

An OpenAI client asks for a web-grounded answer with `web_search_options`
(`{}`, or a `search_context_size` and an approximate `user_location`). An
OpenAI-compatible deployment gets it as sent; Anthropic's and Gemini's adapters
turn it into their own search tools, and read it through here so that a
malformed value is refused the same way on both; budget reservations read it
to count the searches a call may be billed for. Their citations come back as
OpenAI's `url_citation` annotations, built here.

Imports: the standard library, `errors`, `types`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interlock.errors import InvalidRequest
from interlock.types import ChatRequest

# The searches a call may run for each of OpenAI's context sizes, where the
# provider takes a cap (Anthropic's max_uses): each search is billed. Budget
# reservations count the cap whatever the provider.
MAX_SEARCHES = {"low": 1, "medium": 3, "high": 5}
_PLACE_FIELDS = ("city", "region", "country", "timezone")


@dataclass(frozen=True, slots=True)
class WebSearch:
    # low, medium or high; medium when the request gives none, as at OpenAI.
    context_size: str
    # The fields of `user_location.approximate` that were given.
    place: dict[str, str]


def requested_web_search(request: ChatRequest) -> WebSearch | None:
    """The request's web search, None when it asks for none."""
    options = request.extra.get("web_search_options")
    if options is None:
        return None
    if not isinstance(options, dict):
        raise InvalidRequest("web_search_options must be an object, such as {} or "
                             '{"search_context_size": "low"}.', param="web_search_options")
    size = options.get("search_context_size") or "medium"
    if size not in MAX_SEARCHES:
        raise InvalidRequest(
            "web_search_options.search_context_size must be low, medium or high; "
            f"got {size!r}.", param="web_search_options.search_context_size")
    location = options.get("user_location")
    where = location.get("approximate") if isinstance(location, dict) else None
    place = ({k: str(where[k]) for k in _PLACE_FIELDS if where.get(k)}
             if isinstance(where, dict) else {})
    return WebSearch(str(size), place)


def url_citation(start: int, end: int, url: str, title: str) -> dict[str, Any]:
    """OpenAI's `url_citation` annotation over characters `start` to `end` of an
    answer: what each provider's search citations come back as."""
    return {"type": "url_citation", "url_citation": {
        "start_index": start, "end_index": end, "url": url, "title": title}}
