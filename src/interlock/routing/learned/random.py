"""The random router: a reference line for evaluation, not a real choice.

Each prompt gets a uniform quality per model drawn from a hash of the seed and
the prompt, so the same prompt always routes the same way under one seed.

Imports: numpy, `routing.learned.base`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from interlock.routing.learned.base import QualityRouter, TrainingData


class RandomRouter(QualityRouter):
    name = "random"
    features = "none"

    def _fit(self, data: TrainingData, seed: int) -> None:
        return None

    def _predict(self, x: Any) -> np.ndarray:
        out = np.zeros((len(x), len(self.models)))
        for i, prompt in enumerate(x):
            digest = hashlib.sha256(f"{self.seed}\0{prompt}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            out[i] = rng.random(len(self.models))
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        return None
