"""The semantic intent router: routes defined by example utterances.

Each intent has example utterances and a model group. A query goes to the
intent whose nearest examples are most similar to it (the mean of its top-k
cosine similarities), when that similarity reaches the intent's threshold;
otherwise to the default group. `fit` tunes the thresholds on labelled
examples and reports accuracy. Intents can be added, changed or removed
without touching the others: the featuriser is fitted once, and an edit only
embeds the edited intent's utterances.

Imports: numpy, the standard library, `routing.features`, `routing.settings`,
`routing.decision`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from interlock.routing.decision import Candidate
from interlock.routing.settings import Intent, IntentRouterSettings


@dataclass(frozen=True, slots=True)
class IntentMatch:
    group: str
    intent: str | None  # None: below every threshold, the default group
    score: float
    threshold: float
    reason: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class FitReport:
    accuracy_before: float
    accuracy_after: float
    thresholds: dict[str, float]
    examples: int


def _featurizer(spec: str) -> object:
    from interlock.routing import features

    if spec == "hashed":
        return features.HashedNgramFeaturizer()
    if spec.startswith("st:"):
        return features.SentenceTransformerFeaturizer(spec[3:])
    raise ValueError(f"unknown featurizer {spec!r}: use 'hashed' or 'st:<local model path>'")


class IntentRouter:
    def __init__(self, name: str, intents: Sequence[Intent], *, default: str | None,
                 threshold: float, top_k: int, featurizer: object) -> None:
        self.name = name
        self.default = default
        self.threshold = threshold
        self.top_k = top_k
        self._featurizer = featurizer
        self._intents: dict[str, Intent] = {}
        self._vectors: dict[str, Any] = {}
        corpus = [u for intent in intents for u in intent.utterances]
        # Sparse TF-IDF where the featuriser has it: a few dozen utterances are
        # too few to fit a dense projection that new queries would land in.
        self._sparse = hasattr(featurizer, "fit_idf") and hasattr(featurizer, "transform_sparse")
        if self._sparse:
            featurizer.fit_idf(corpus)  # type: ignore[attr-defined]
        else:
            featurizer.fit(corpus)  # type: ignore[attr-defined]
        for intent in intents:
            self.set_intent(intent)

    @classmethod
    def from_settings(cls, name: str, settings: IntentRouterSettings) -> IntentRouter:
        return cls(name, settings.intents, default=settings.default,
                   threshold=settings.threshold, top_k=settings.top_k,
                   featurizer=_featurizer(settings.featurizer))

    # -- editing ------------------------------------------------------------------
    def set_intent(self, intent: Intent) -> None:
        """Add or replace one intent; the others are left exactly as they were."""
        self._intents[intent.name] = intent
        self._vectors[intent.name] = self._embed(intent.utterances)

    def remove_intent(self, name: str) -> None:
        del self._intents[name]
        del self._vectors[name]

    @property
    def intents(self) -> list[Intent]:
        return list(self._intents.values())

    @property
    def groups(self) -> list[str]:
        out = [i.group for i in self._intents.values()]
        return out + ([self.default] if self.default else [])

    def _embed(self, texts: Sequence[str]) -> Any:
        if self._sparse:
            return self._featurizer.transform_sparse(list(texts))  # type: ignore[attr-defined]
        return np.asarray(self._featurizer.transform(list(texts)),  # type: ignore[attr-defined]
                          dtype=np.float32)

    # -- routing ------------------------------------------------------------------
    def scores(self, query: str) -> dict[str, float]:
        """Each intent's similarity to the query: mean of its top-k example cosines."""
        q = self._embed([query])
        out = {}
        for name, vectors in self._vectors.items():
            sims = _dense(vectors @ q.T)
            k = min(self.top_k, sims.shape[0])
            top = np.partition(sims, -k)[-k:] if k < sims.shape[0] else sims
            out[name] = float(top.mean())
        return out

    def _threshold(self, intent: Intent) -> float:
        return intent.threshold if intent.threshold is not None else self.threshold

    def route(self, query: str) -> IntentMatch:
        scores = self.scores(query)
        candidates = tuple(Candidate(self._intents[n].group, s)
                           for n, s in sorted(scores.items(), key=lambda kv: -kv[1]))
        if scores:
            best = max(scores, key=scores.__getitem__)
            intent = self._intents[best]
            threshold = self._threshold(intent)
            if scores[best] >= threshold:
                return IntentMatch(intent.group, best, scores[best], threshold,
                                   f"intent {best!r} (similarity {scores[best]:.3f} >= "
                                   f"{threshold:.3f})", candidates)
            below = f"best intent {best!r} at {scores[best]:.3f} is below {threshold:.3f}"
        else:
            best, threshold, below = "", self.threshold, "no intents defined"
        if self.default is None:
            raise LookupError(f"{below} and the intent router {self.name!r} has no default")
        return IntentMatch(self.default, None, scores.get(best, 0.0), threshold,
                           f"{below}; the default group", candidates)

    # -- tuning -------------------------------------------------------------------
    def accuracy(self, examples: Sequence[tuple[str, str | None]]) -> float:
        """Share of (query, intent name or None for 'no intent') routed right."""
        if not examples:
            return 0.0
        hits = sum(1 for q, want in examples if self.route(q).intent == want)
        return hits / len(examples)

    def fit(self, examples: Sequence[tuple[str, str | None]]) -> FitReport:
        """Tune each intent's threshold on labelled queries (label None: should
        fall to the default) to maximise accuracy, one intent at a time."""
        before = self.accuracy(examples)
        table = [(self.scores(q), want) for q, want in examples]
        for name, intent in list(self._intents.items()):
            best_t, best_hits = self._threshold(intent), -1
            for t in _candidate_thresholds(table, name):
                self._intents[name] = intent.model_copy(update={"threshold": t})
                hits = sum(1 for s, want in table if self._pick(s) == want)
                if hits > best_hits:
                    best_t, best_hits = t, hits
            self._intents[name] = intent.model_copy(update={"threshold": best_t})
        after = self.accuracy(examples)
        return FitReport(before, after,
                         {n: self._threshold(i) for n, i in self._intents.items()},
                         len(examples))

    def _pick(self, scores: dict[str, float]) -> str | None:
        if not scores:
            return None
        best = max(scores, key=scores.__getitem__)
        return best if scores[best] >= self._threshold(self._intents[best]) else None


def _dense(x: Any) -> np.ndarray:
    """Similarities as a flat array, from a sparse or a dense product."""
    if hasattr(x, "toarray"):
        x = x.toarray()
    return np.asarray(x, dtype=np.float64).ravel()


def _candidate_thresholds(table: Sequence[tuple[dict[str, float], str | None]],
                          name: str) -> list[float]:
    """Midpoints between the observed scores of this intent, plus the extremes."""
    values = sorted({round(scores[name], 6) for scores, _ in table if name in scores})
    mids = [(a + b) / 2 for a, b in itertools.pairwise(values)]
    return [-1.0, *mids, *(v + 1e-6 for v in values[-1:])]
