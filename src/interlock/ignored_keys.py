"""Settings keys that LiteLLM files and Router calls carry and Interlock ignores.

A settings model lists them in `IGNORED`. They are accepted, so that LiteLLM
config files and ported code load, and set aside before validation, so that
they are never stored: some, such as a database URL or an alerting webhook,
hold secrets. `ignored_keys` says which were given, for the loader's warnings.

Imports: pydantic, the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ModelWrapValidatorHandler, PrivateAttr, model_validator


class AcceptsIgnoredKeys(BaseModel):
    IGNORED: ClassVar[frozenset[str]] = frozenset()
    _ignored_keys: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _set_aside_ignored(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        given: frozenset[str] = frozenset()
        if isinstance(data, Mapping):
            given = frozenset(key for key in data if key in cls.IGNORED)
            if given:
                data = {k: v for k, v in data.items() if k not in given}
        model = handler(data)
        if given:  # an instance revalidated as itself keeps what it had
            model._ignored_keys = given
        return model

    @property
    def ignored_keys(self) -> frozenset[str]:
        """The ignored keys this model was given."""
        return self._ignored_keys
