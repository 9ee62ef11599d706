"""RouteLLM's two-model metrics: performance against strong-call share, PGR, APGR, CPT.

A two-model router gives every prompt a score (its estimate of P(strong beats
weak)); a threshold sends the prompts at or above it to the strong model. We
sweep every threshold the scores allow, so the strong-call share runs from 0 to
100 %, and record the mean score of the chosen model at each share.

Definitions (as in the RouteLLM paper and its `evals/evaluate.py`):

- performance(s): mean score of the chosen model at strong-call share s.
- PGR(s) = (performance(s) - weak) / (strong - weak), where weak and strong are
  the mean scores of always calling that model.
- APGR: the area under PGR against the share, s in [0, 1] (trapezoids).
- CPT(x): the smallest strong-call share whose PGR reaches x.

Where RouteLLM samples 10 quantile thresholds, we use every distinct score (the
curve is exact); prompts with equal scores cannot be split by a threshold, so
between two achievable points the curve is the straight line that a random
tie-break gives in expectation. `quantile_apgr` reproduces the 10-bin estimate
for comparison with the paper's numbers.

Imports: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Share grid used when curves are averaged, plotted or written to JSON.
GRID_POINTS = 101
RANDOM_SEEDS = 10
# The random baseline draws from its own stream, so its noise never coincides
# with data or folds generated from the same small seeds.
_NOISE_STREAM = 0x52414E44


@dataclass(frozen=True)
class CallShareCurve:
    """Performance at every achievable strong-call share, shares ascending from 0 to 1.

    `thresholds[i]` is the router score at or above which a prompt goes to the
    strong model to reach `shares[i]` (`inf` for share 0). `order` lists the
    prompts from most to least strong-worthy, so the first `round(share * n)`
    of them are the ones sent to the strong model.
    """

    shares: np.ndarray
    performance: np.ndarray
    thresholds: np.ndarray
    weak: float
    strong: float
    order: np.ndarray

    @property
    def pgr(self) -> np.ndarray:
        return (self.performance - self.weak) / _gap(self.strong, self.weak)

    def strong_mask(self, point: int) -> np.ndarray:
        """Which prompts go to the strong model at curve point `point`."""
        k = int(np.rint(self.shares[point] * len(self.order)))
        mask = np.zeros(len(self.order), dtype=bool)
        mask[self.order[:k]] = True
        return mask

    def on_grid(self, points: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
        """(shares, performance) interpolated on an even share grid."""
        grid = np.linspace(0.0, 1.0, points)
        return grid, np.interp(grid, self.shares, self.performance)


def _gap(strong: float, weak: float) -> float:
    gap = strong - weak
    if abs(gap) < 1e-12:
        raise ValueError("strong and weak models score the same on this data: PGR is undefined")
    return gap


def _as_arrays(*arrays: np.ndarray) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    n = len(out[0])
    if n == 0:
        raise ValueError("no prompts to evaluate")
    if any(len(a) != n for a in out):
        raise ValueError("router scores and model scores must have one value per prompt")
    return out


def call_share_curve(
    router_scores: np.ndarray, strong_scores: np.ndarray, weak_scores: np.ndarray
) -> CallShareCurve:
    """The exact performance curve of a threshold router on outcome data."""
    r, s, w = _as_arrays(router_scores, strong_scores, weak_scores)
    n = len(r)
    # Stable sort on the negated score keeps the input order inside a tie group,
    # which makes `order` reproducible.
    order = np.argsort(-r, kind="stable")
    sorted_scores = r[order]
    gains = np.concatenate([[0.0], np.cumsum(s[order] - w[order])])
    # A tie group ends where the next score differs; only those counts are reachable.
    ends = np.flatnonzero(np.diff(sorted_scores) != 0) + 1
    counts = np.concatenate([[0], ends, [n]])
    thresholds = np.concatenate([[np.inf], sorted_scores[counts[1:] - 1]])
    weak = float(w.mean())
    return CallShareCurve(
        shares=counts / n,
        performance=weak + gains[counts] / n,
        thresholds=thresholds,
        weak=weak,
        strong=float(s.mean()),
        order=order,
    )


def oracle_curve(strong_scores: np.ndarray, weak_scores: np.ndarray) -> CallShareCurve:
    """The best performance reachable with at most each strong-call share.

    The oracle knows the outcomes: it calls the strong model only where that
    raises the score, the biggest gains first, and never where it would lower
    it (as RouteLLM's optimal line), so its curve flattens once those run out.
    """
    s, w = _as_arrays(strong_scores, weak_scores)
    gain = s - w
    curve = call_share_curve(gain, s, w)
    helpful = np.maximum.accumulate(curve.performance)
    return CallShareCurve(
        shares=curve.shares,
        performance=helpful,
        thresholds=curve.thresholds,
        weak=curve.weak,
        strong=curve.strong,
        order=curve.order,
    )


def apgr(curve: CallShareCurve) -> float:
    """Average performance gap recovered: the area under PGR over shares 0 to 1."""
    return float(np.trapezoid(curve.pgr, curve.shares))


def share_reaching(curve: CallShareCurve, performance: float) -> float:
    """The smallest strong-call share whose (interpolated) performance reaches `performance`.

    NaN when the curve never gets there.
    """
    perf = curve.performance
    hits = np.flatnonzero(perf >= performance - 1e-12)
    if len(hits) == 0:
        return float("nan")
    i = int(hits[0])
    if i == 0:
        return 0.0
    x0, x1 = curve.shares[i - 1], curve.shares[i]
    y0, y1 = perf[i - 1], perf[i]
    return float(x0 + (performance - y0) / (y1 - y0) * (x1 - x0))


def cpt(curve: CallShareCurve, pgr_target: float) -> float:
    """Call-performance threshold: the smallest strong share with PGR >= `pgr_target` (0..1)."""
    target = curve.weak + pgr_target * _gap(curve.strong, curve.weak)
    return share_reaching(curve, target)


def share_for_strong_quality(curve: CallShareCurve, fraction: float = 0.95) -> float:
    """The smallest strong share whose performance is `fraction` of the strong model's."""
    return share_reaching(curve, fraction * curve.strong)


def quantile_apgr(
    router_scores: np.ndarray,
    strong_scores: np.ndarray,
    weak_scores: np.ndarray,
    bins: int = 10,
) -> float:
    """APGR estimated as RouteLLM's evaluate.py does: thresholds at score quantiles.

    Each quantile edge routes strong at or above it (the top edge: strictly
    above), giving `bins + 1` points that are joined by trapezoids.
    """
    r, s, w = _as_arrays(router_scores, strong_scores, weak_scores)
    edges = np.quantile(r, np.linspace(0.0, 1.0, bins + 1))
    shares, perf = [], []
    for i, edge in enumerate(edges):
        chosen = r > edge if i == len(edges) - 1 else r >= edge
        shares.append(chosen.mean())
        perf.append(np.where(chosen, s, w).mean())
    order = np.argsort(shares, kind="stable")
    x = np.asarray(shares)[order]
    y = np.asarray(perf)[order]
    weak, strong = float(w.mean()), float(s.mean())
    area = np.trapezoid(y, x)
    span = x[-1] - x[0]
    return float((area - weak * span) / ((strong - weak) * span))


@dataclass(frozen=True)
class TwoModelSummary:
    """The headline numbers of one router's curve (shares and PGR as fractions)."""

    apgr: float
    cpt50: float
    cpt80: float
    share_for_95: float
    apgr_10_bins: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "apgr": self.apgr,
            "apgr_10_bins": self.apgr_10_bins,
            "cpt50": self.cpt50,
            "cpt80": self.cpt80,
            "share_for_95pct_strong": self.share_for_95,
        }


def summarise(curve: CallShareCurve, apgr_10_bins: float | None = None) -> TwoModelSummary:
    return TwoModelSummary(
        apgr=apgr(curve),
        cpt50=cpt(curve, 0.5),
        cpt80=cpt(curve, 0.8),
        share_for_95=share_for_strong_quality(curve, 0.95),
        apgr_10_bins=apgr_10_bins,
    )


@dataclass(frozen=True)
class RandomBaseline:
    """The random router averaged over seeds: mean summary, its spread, the mean curve."""

    summary: TwoModelSummary
    apgr_std: float
    seeds: int
    grid: np.ndarray
    performance: np.ndarray


def random_baseline(
    strong_scores: np.ndarray,
    weak_scores: np.ndarray,
    *,
    seeds: int = RANDOM_SEEDS,
    first_seed: int = 0,
) -> RandomBaseline:
    """A router whose scores are uniform noise, averaged over `seeds` seeds (at least 10)."""
    if seeds < 1:
        raise ValueError("seeds must be positive")
    s, w = _as_arrays(strong_scores, weak_scores)
    summaries, curves = [], []
    for seed in range(first_seed, first_seed + seeds):
        noise = np.random.default_rng((_NOISE_STREAM, seed)).random(len(s))
        curve = call_share_curve(noise, s, w)
        summaries.append(summarise(curve, quantile_apgr(noise, s, w)))
        curves.append(curve.on_grid()[1])
    grid = np.linspace(0.0, 1.0, GRID_POINTS)

    def mean(attr: str) -> float:
        return float(np.nanmean([getattr(x, attr) for x in summaries]))

    summary = TwoModelSummary(
        apgr=mean("apgr"),
        cpt50=mean("cpt50"),
        cpt80=mean("cpt80"),
        share_for_95=mean("share_for_95"),
        apgr_10_bins=mean("apgr_10_bins"),
    )
    return RandomBaseline(
        summary=summary,
        apgr_std=float(np.std([x.apgr for x in summaries])),
        seeds=seeds,
        grid=grid,
        performance=np.mean(curves, axis=0),
    )
