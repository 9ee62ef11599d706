"""`MaskedModel`: a pydantic settings model whose repr and JSON dumps hide secrets;
`url_without_credentials` for a URL shown to callers.

Settings sections that hold credentials as plain strings (a Redis password, a
database URL with a password in it) derive from it and name those fields, so
that printing a config, logging it or dumping it as JSON never shows them.
Python-mode dumps and attribute access keep the real values: the code that
connects needs them.

Imports: pydantic, `errors`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SerializationInfo, SerializerFunctionWrapHandler, model_serializer

from interlock.errors import redact

MASK = "********"


class MaskedModel(BaseModel):
    # Fields whose whole value is a secret, and fields holding a URL whose
    # password is (the rest of the URL stays readable).
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()
    URL_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _masked(cls, name: str | None, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        if name in cls.SECRET_FIELDS:
            return MASK
        if name in cls.URL_FIELDS:
            return redact(value)
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, self._masked(name, value)

    @model_serializer(mode="wrap")
    def _dump_masked(self, handler: SerializerFunctionWrapHandler,
                     info: SerializationInfo) -> Any:
        data = handler(self)
        if info.mode == "json" and isinstance(data, dict):
            return {name: self._masked(name, value) for name, value in data.items()}
        return data


def url_without_credentials(url: str) -> str:
    """`url` without user:password@ and without its query and fragment, where
    some providers take a key (`?key=`), for showing which endpoint answered."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return redact(urlunsplit((parts.scheme, host, parts.path, "", "")))
