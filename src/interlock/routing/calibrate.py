"""Calibration: turn "send 30 % of my prompts to the strong model" (or "spend at
most $X per 1,000 requests") into the threshold, lambda or quality target that
does it on the user's own prompts.

Imports: numpy, the standard library, `routing.data`, `routing.quality_policy`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interlock.routing.data import data_files, load_outcomes, read_records
from interlock.routing.quality_policy import (
    Cost,
    choose_cheapest_reaching,
    choose_tradeoff,
    expected_cost,
)


def load_prompts(path: str | Path) -> list[str]:
    """Prompts from JSONL ("prompt" field), an outcome table, or a text file (one per line)."""
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in (".csv", ".parquet"):
        prompts = load_outcomes(p).prompts
    elif p.suffix.lower() in (".jsonl", ".json"):
        prompts = []
        for f in data_files(p):
            for number, r in enumerate(read_records(f), start=1):
                prompt = r if isinstance(r, str) else (
                    r.get("prompt") if isinstance(r, dict) else None)
                if not isinstance(prompt, str):
                    found = ("no 'prompt' field" if isinstance(r, dict) and "prompt" not in r
                             else f"a {type(prompt if isinstance(r, dict) else r).__name__}")
                    raise ValueError(f"{f}: record {number} needs a 'prompt' string "
                                     f"(found {found})")
                prompts.append(prompt)
    else:
        prompts = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{p}: no prompts in it; give one prompt per line, or JSONL "
                         "records with a 'prompt' field")
    return prompts


def threshold_for_share(scores: np.ndarray, share: float) -> float:
    """Threshold t so that the rule `score >= t` picks `share` of the scores.

    With ties the share may be exceeded; the chosen t is the k-th largest score.
    share 0 gives a threshold above every score.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must lie between 0 and 1")
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = round(share * len(s))
    if k == 0:
        return float(np.nextafter(s[0], np.inf)) if len(s) else 1.0
    return float(s[k - 1])


@dataclass(frozen=True)
class Calibration:
    value: float  # the threshold, lambda or quality target
    kind: str  # "threshold" | "lambda" | "target"
    strong_share: float  # share routed to the strong (priciest) model on these prompts
    cost_per_1k: float | None = None


def calibrate_threshold(win_prob: np.ndarray, share: float) -> Calibration:
    t = threshold_for_share(win_prob, share)
    return Calibration(t, "threshold", float(np.mean(np.asarray(win_prob) >= t)))


def _bisect(achieved: Callable[[float], float], goal: float, lo: float, hi: float,
            *, decreasing: bool, steps: int = 60) -> float:
    """The parameter at which a monotone `achieved` meets `goal` (the feasible side)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        over = achieved(mid) > goal
        # decreasing: a bigger parameter lowers `achieved`; move towards the goal.
        if over == decreasing:
            lo = mid
        else:
            hi = mid
    return hi if decreasing else lo


def calibrate_lambda(
    quality: np.ndarray, costs: Sequence[Cost], *, strong_share: float | None = None,
    budget_per_1k: float | None = None,
) -> Calibration:
    """lambda for `best_tradeoff` giving a strong-model share, or a cost within budget."""
    c = np.array([float(x) for x in costs])
    strong = int(np.argmax(c))
    span = float(np.ptp(quality)) + 1.0
    hi = span / max(float(np.min(np.diff(np.unique(c)))) if len(np.unique(c)) > 1 else 1.0,
                    1e-12)

    def share(lam: float) -> float:
        return float(np.mean(choose_tradeoff(quality, costs, lam) == strong))

    def cost(lam: float) -> float:
        return expected_cost(choose_tradeoff(quality, costs, lam), costs)

    if strong_share is not None:
        lam = _bisect(share, strong_share, 0.0, hi, decreasing=True)
    elif budget_per_1k is not None:
        lam = _bisect(cost, budget_per_1k, 0.0, hi, decreasing=True)
    else:
        raise ValueError("give strong_share or budget_per_1k")
    choice = choose_tradeoff(quality, costs, lam)
    return Calibration(lam, "lambda", float(np.mean(choice == strong)),
                       expected_cost(choice, costs))


def calibrate_target(
    quality: np.ndarray, costs: Sequence[Cost], *, strong_share: float | None = None,
    budget_per_1k: float | None = None,
) -> Calibration:
    """Quality target for `cheapest_reaching` giving a strong share or a budget."""
    strong = int(np.argmax([float(x) for x in costs]))

    def share(target: float) -> float:
        return float(np.mean(choose_cheapest_reaching(quality, costs, target) == strong))

    def cost(target: float) -> float:
        return expected_cost(choose_cheapest_reaching(quality, costs, target), costs)

    lo, hi = float(np.min(quality)) - 1e-9, float(np.max(quality)) + 1e-9
    if strong_share is not None:
        target = _bisect(share, strong_share, lo, hi, decreasing=False)
    elif budget_per_1k is not None:
        target = _bisect(cost, budget_per_1k, lo, hi, decreasing=False)
    else:
        raise ValueError("give strong_share or budget_per_1k")
    choice = choose_cheapest_reaching(quality, costs, target)
    return Calibration(target, "target", float(np.mean(choice == strong)),
                       expected_cost(choice, costs))


def calibration_json(c: Calibration) -> str:
    return json.dumps({"kind": c.kind, "value": c.value, "strong_share": c.strong_share,
                       "cost_per_1k": c.cost_per_1k})
