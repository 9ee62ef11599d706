"""The LLM-judge router (the analogue of RouteLLM's `causal_llm`): a cheap model
rates each prompt's difficulty from 1 to 5 and a table maps the rating to a
quality per model.

The model is reached through an injected async `ask(prompt) -> reply` (the
gateway passes one bound to a configured cheap model group; routing makes no
network call itself). Replies are parsed strictly: a single digit 1-5, nothing
else, or the call fails (and the caller falls back to its default group).
Ratings are cached per prompt (bounded LRU) so a retried request costs nothing.

The table comes from config (`table: {model: [q1, .., q5]}`), from training
(mean score of each model among training prompts of each rating, which asks
the judge about every training prompt), or, untrained, from the model order:
models listed strongest first (when fitted without a judge, as `interlock
train` does offline: strongest by training mean), weaker models losing more
quality as the difficulty rises.

Imports: numpy, `routing.learned.base`, `routing.params`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from interlock.routing.learned.base import (
    QualityRouter,
    TrainingData,
    run_sync,
    to_observations,
)
from interlock.routing.params import POSITIVE_INT, ParamSpec

Ask = Callable[[str], Awaitable[str]]

RATING_PROMPT = (
    "Rate how hard it is to answer the user request below well, on a scale from 1 "
    "(trivial: any small model answers it) to 5 (very hard: needs the strongest "
    "model). Reply with the single digit only.\n\nUser request:\n{prompt}"
)
_RATING = re.compile(r"\s*([1-5])\s*\.?\s*")


def parse_rating(reply: str) -> int:
    """The rating in a judge's reply; anything but a lone digit 1-5 is an error."""
    match = _RATING.fullmatch(reply)
    if match is None:
        raise ValueError(f"llm router: the judge's reply is not a rating 1-5: {reply[:40]!r}")
    return int(match.group(1))


def default_table(m: int) -> np.ndarray:
    """(5, m): model j (0 = strongest) keeps 0.95 at rating 1 and loses more as j grows."""
    r = np.arange(5)[:, None] / 4.0
    weakness = (np.arange(m)[None, :] + 1.0) / max(m, 1)
    return np.clip(0.95 - 0.6 * r * weakness, 0.0, 1.0)


class LlmRouter(QualityRouter):
    name = "llm"
    PARAMS: ClassVar[dict[str, ParamSpec]] = {
        "table": ParamSpec(dict, nullable=True),
        "cache_size": ParamSpec(int, at_least=0),
        "concurrency": POSITIVE_INT,
    }
    features = "none"

    def __init__(self, *, table: dict[str, list[float]] | None = None, cache_size: int = 4096,
                 concurrency: int = 8, ask: Ask | None = None, **kw: Any) -> None:
        super().__init__(table=table, cache_size=cache_size, concurrency=concurrency, **kw)
        self.ask = ask
        self.cache_size, self.concurrency = int(cache_size), int(concurrency)
        self._configured = table
        self.table = np.zeros((5, 0))
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        if self.models:
            self._set_default_table()

    def _set_default_table(self, *, by_mean: bool = False) -> None:
        self.table = default_table(len(self.models))
        if by_mean and self.mean_quality:
            order = self.ranked()
            rank = np.array([order.index(m) for m in self.models])  # 0 = strongest
            self.table = self.table[:, rank]
        for j, model in enumerate(self.models):
            if self._configured and model in self._configured:
                self.table[:, j] = np.asarray(self._configured[model], dtype=np.float64)

    def set_ask(self, ask: Ask | None) -> None:
        """The gateway's way to reach the judge model group."""
        self.ask = ask

    async def rate(self, prompt: str) -> int:
        key = hashlib.sha1(prompt.encode("utf-8", "surrogatepass")).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self.ask is None:
            raise RuntimeError("llm router has no `ask` function: the gateway must pass one")
        rating = parse_rating(await self.ask(RATING_PROMPT.format(prompt=prompt)))
        self._cache[key] = rating
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return rating

    async def rate_all(self, prompts: Sequence[str]) -> np.ndarray:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(p: str) -> int:
            async with gate:
                return await self.rate(p)

        return np.array(await asyncio.gather(*(one(p) for p in prompts)), dtype=np.int64)

    def _fit(self, data: TrainingData, seed: int) -> None:
        # Without a judge the default table is all there is; its columns go by the
        # models' training means, as the data's column order says nothing of strength.
        self._set_default_table(by_mean=True)
        if self.ask is None:
            return
        obs = to_observations(data, self.models)
        ratings = run_sync(self.rate_all(obs.prompts))[obs.prompt]
        self._learn_table(ratings, obs.model, obs.score)

    def _learn_table(self, ratings: np.ndarray, model: np.ndarray, score: np.ndarray) -> None:
        m = len(self.models)
        sums = np.zeros((5, m))
        counts = np.zeros((5, m))
        np.add.at(sums, (ratings - 1, model), score)
        np.add.at(counts, (ratings - 1, model), 1.0)
        overall = sums.sum(0) / np.maximum(counts.sum(0), 1.0)
        # Two pseudo-observations of the model's overall mean per cell.
        self.table = (sums + 2.0 * overall) / (counts + 2.0)

    def _quality(self, ratings: np.ndarray) -> np.ndarray:
        return np.asarray(self.table[ratings - 1], dtype=np.float64)

    def _predict(self, x: Any) -> np.ndarray:
        return self._quality(run_sync(self.rate_all(list(x))))

    async def apredict_quality(self, prompts: Sequence[str]) -> np.ndarray:
        return self._quality(await self.rate_all(prompts))

    async def awin_prob(self, prompts: Sequence[str], strong: str, weak: str) -> np.ndarray:
        q = await self.apredict_quality(prompts)
        s, w = self.model_index(strong), self.model_index(weak)
        return np.clip(0.5 + 0.5 * (q[:, s] - q[:, w]), 0.0, 1.0)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"table": self.table}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.table = arrays["table"]
