"""Calibration: turn "send 30 % of my prompts to the strong model" (or "spend at
most $X per 1,000 requests") into the threshold, lambda or quality target that
does it on the user's own prompts.

Imports: numpy, the standard library, `routing.data`, `routing.quality_policy`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np

from interlock.routing.data import (
    EMPTY_PROMPT,
    data_files,
    load_prompt_column,
    prompt_text,
    read_records,
)
from interlock.routing.quality_policy import (
    Cost,
    choose_cheapest_reaching,
    choose_tradeoff,
    expected_cost,
)


def load_prompts(path: str | Path) -> list[str]:
    """Prompts from JSONL ("prompt" field), training data, or a text file (one per line)."""
    return load_prompts_counted(path)[0]


def load_prompts_counted(path: str | Path) -> tuple[list[str], dict[str, int]]:
    """The prompts and the rows left out, by reason. Training data (an outcome
    table, battles) is read as `interlock train` reads its prompts, so calibration
    sees the texts the router learnt from: a battle's first turn, no empty prompt."""
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in (".csv", ".parquet"):
        return load_prompt_column(p)
    if p.suffix.lower() not in (".jsonl", ".json"):
        lines = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        return _some(p, lines), {}
    files = [(f, read_records(f)) for f in data_files(p)]
    # Records with fields beside "prompt" are training data (an outcome table,
    # battles, a "question" column): read as `train` reads them. Only a file of
    # prompts alone gets the strict reading below.
    if any(isinstance(r, dict) and r.keys() - {"prompt"} for _, rs in files for r in rs):
        return load_prompt_column(p)
    prompts, empty = [], 0
    for f, records in files:
        for number, r in enumerate(records, start=1):
            prompt = r if isinstance(r, str) else (
                r.get("prompt") if isinstance(r, dict) else None)
            if isinstance(r, dict) and "prompt" in r and prompt_text(prompt) == "":
                empty += 1  # null or blank: left out, as training leaves it out
                continue
            if not isinstance(prompt, str):
                found = ("no 'prompt' field" if isinstance(r, dict) and "prompt" not in r
                         else f"a {type(prompt if isinstance(r, dict) else r).__name__}")
                raise ValueError(f"{f}: record {number} needs a 'prompt' string "
                                 f"(found {found})")
            prompts.append(prompt)
    return _some(p, prompts), ({EMPTY_PROMPT: empty} if empty else {})



def _some(path: Path, prompts: list[str]) -> list[str]:
    if not prompts:
        raise ValueError(f"{path}: no prompts in it; give one prompt per line, or JSONL "
                         "records with a 'prompt' field")
    return prompts


def _reachable(scores: np.ndarray) -> list[tuple[int, float]]:
    """(how many scores `score >= t` picks, t) for every share a threshold can give:
    each distinct score, and above the top one (while that stays within [0, 1])."""
    values, counts = np.unique(np.asarray(scores, dtype=np.float64), return_counts=True)
    values, picked = values[::-1], np.cumsum(counts[::-1])
    options = [(int(k), float(v)) for k, v in zip(picked, values, strict=True)]
    if not len(values) or values[0] < 1.0:
        top = float(values[0]) if len(values) else 0.0
        options.insert(0, (0, float(np.nextafter(top, np.inf)) if len(values) else 1.0))
    return options


def threshold_for_share(scores: np.ndarray, share: float) -> float:
    """Threshold t so that the rule `score >= t` picks the reachable share nearest
    `share` (tied scores go together, so not every share can be had; between two
    equally near, the smaller). share 0 gives a threshold above every score.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must lie between 0 and 1")
    goal = share * len(scores)
    return min(_reachable(scores), key=lambda option: abs(option[0] - goal))[1]


def short_threshold(scores: np.ndarray, t: float) -> str:
    """The shortest plain decimal (no exponent, which a `router-<name>-<t>` name
    cannot carry) that picks the same scores as `t` under `score >= t`.

    Six significant digits could cross the score the share hangs on (the printed
    threshold gave 29.9 % for an asked 30 %); this keeps the printed value inside
    the gap between the lowest score picked and the highest one left out.
    """
    s = np.asarray(scores, dtype=np.float64)
    below = s[s < t]
    above = s[s >= t]
    lo = float(below.max()) if len(below) else -np.inf  # the printed value must stay above
    hi = float(above.min()) if len(above) else 1.0  # ... and at or below this
    for digits in range(1, 18):
        step = Decimal(1).scaleb(-digits)
        for rounding in (ROUND_FLOOR, ROUND_CEILING):
            candidate = Decimal(t).quantize(step, rounding=rounding)
            if lo < float(candidate) <= hi and candidate >= 0:
                return _plain(candidate)
    return _plain(Decimal(repr(t)))


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Calibration:
    value: float  # the threshold, lambda or quality target
    kind: str  # "threshold" | "lambda" | "target"
    strong_share: float  # share routed to the strong (priciest) model on these prompts
    cost_per_1k: float | None = None
    # The threshold as printed: a plain decimal giving exactly `strong_share`.
    shown: str = ""
    # Why the share differs from the one asked (tied scores), or None.
    note: str | None = None


def calibrate_threshold(win_prob: np.ndarray, share: float) -> Calibration:
    scores = np.asarray(win_prob, dtype=np.float64)
    shown = short_threshold(scores, threshold_for_share(scores, share))
    reached = float(np.mean(scores >= float(shown))) if len(scores) else 0.0
    note = None
    if len(scores) and abs(reached - share) * len(scores) >= 1.0:
        note = (f"tied scores make {share:.1%} unreachable on these prompts; the nearest "
                f"share a threshold gives is {reached:.1%}")
    return Calibration(float(shown), "threshold", reached, shown=shown, note=note)


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
