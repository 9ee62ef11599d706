"""What every prompt featuriser is: text in, L2-normalised float32 vectors out.

`Featurizer` is the protocol the routers read features through; `atransform`
calls a featuriser from async code, using its own `atransform` when it calls out
(an embeddings endpoint). `Embed` is the async function such a featuriser is
given, so routing makes no network call itself.

Imports: numpy, the standard library.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


@runtime_checkable
class Featurizer(Protocol):
    name: str
    dim: int

    def fit(self, texts: Sequence[str]) -> None: ...

    def transform(self, texts: Sequence[str]) -> np.ndarray: ...

    def manifest(self) -> dict[str, Any]: ...

    def save(self, directory: str | Path) -> None: ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


async def atransform(featurizer: Featurizer, texts: Sequence[str]) -> np.ndarray:
    """Async features: featurisers that call out (endpoints) implement `atransform`."""
    method = getattr(featurizer, "atransform", None)
    if method is not None:
        result: np.ndarray = await method(texts)
        return result
    return featurizer.transform(texts)
