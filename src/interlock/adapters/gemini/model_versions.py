"""What a Gemini model id says of the model: whether it is Gemini 3 or later
(which think by level, bill grounding per query and want thought signatures
back).

Imports: the standard library.
"""

from __future__ import annotations

import re

# The major version in a model id ("gemini-2.5-pro" -> 2, "gemini-3-pro-preview" -> 3).
_GEMINI_VERSION = re.compile(r"gemini-(\d+)")


def needs_signature(model: str) -> bool:
    found = re.match(r"(?:models/)?gemini-(\d+)", model)
    if found:
        return int(found.group(1)) >= 3
    # Unversioned aliases (gemini-flash-latest) may point at a Gemini 3 model.
    return model.removeprefix("models/").startswith("gemini-") and model.endswith("-latest")


def from_gemini_3(model: str) -> bool:
    """Gemini 3 and later: they think by level, and bill grounding per query."""
    version = _GEMINI_VERSION.search(model)
    return version is not None and int(version.group(1)) >= 3
