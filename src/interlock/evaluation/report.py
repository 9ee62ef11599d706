"""An `EvaluationReport` as a terminal table and as JSON-ready data.

Shares and PGR are printed as percentages; dollars per 1,000 requests as
Decimal strings. Curves go into JSON sampled on 101 even points (share axis)
or 101 even budgets (dollar axis) so files stay small.

Imports: numpy, the standard library, `evaluation.runner`, `evaluation.frontier`,
`evaluation.cost_axis`.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from interlock.evaluation import frontier as fr
from interlock.evaluation.cost_axis import money
from interlock.evaluation.runner import EvaluationReport, RouterResult


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3f}"


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"${money(value)}"


def _row(result: RouterResult, two_model: bool) -> list[str]:
    cheap = result.cheapest
    tail = [
        _usd(cheap.cost_per_1k if cheap else None),
        _pct(cheap.saving_share if cheap else None),
        _num(result.cost_area),
    ]
    if not two_model:
        return [result.name, *tail]
    s = result.summary
    head = [
        _num(s.apgr if s else None),
        _num(s.apgr_10_bins if s else None),
        _pct(s.cpt50 if s else None),
        _pct(s.cpt80 if s else None),
        _pct(s.share_for_95 if s else None),
    ]
    return [result.name, *head, *tail]


def _layout(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        rest = [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        cells = [r[0].ljust(widths[0]), *rest]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def render_table(report: EvaluationReport) -> str:
    """The human summary: one line per router and baseline, then each model alone."""
    two = report.mode == "two-model"
    header = ["router"]
    if two:
        header += ["APGR", "APGR(10 bins)", "CPT(50%)", "CPT(80%)", "share@95%"]
    header += ["$/1k@95%", "saving", "cost AUC"]
    rows = [header] + [_row(r, two) for r in report.results]
    lines = [
        f"{report.prompts} prompts, {report.folds}-fold cross-validation, seed {report.seed}"
        + (f"; strong {report.strong}, weak {report.weak}" if two else ""),
        "",
        *_layout(rows),
        "",
        "each model alone:",
    ]
    for m in report.models:
        cost = report.model_cost_per_1k.get(m) if report.model_cost_per_1k else None
        lines.append(f"  {m}: quality {report.model_quality[m]:.4f}, {_usd(cost)} per 1k requests")
    lines.append(f"costs: {report.cost_note}")
    # Each column explained only where the table has it (N models: no share@95%).
    legend = "$/1k@95% = cheapest setting keeping 95% of the best model's quality"
    if two:
        legend = ("share@95% = strong-call share keeping 95% of the strong model's quality; "
                  + legend)
    lines.append(legend)
    return "\n".join(lines)


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def _cost_curve_json(result: RouterResult, report: EvaluationReport) -> dict[str, Any] | None:
    curve = result.cost_curve
    if curve is None or report.cost_bounds is None:
        return None
    low, high = report.cost_bounds
    budget, quality = fr.on_cost_grid(curve, low, high)
    return {
        "usd_per_1k_requests": [_clean(b * 1000) for b in budget],
        "quality": [_clean(q) for q in quality],
    }


def result_json(result: RouterResult, report: EvaluationReport) -> dict[str, Any]:
    data: dict[str, Any] = {"name": result.name, "kind": result.kind}
    if result.summary is not None:
        data.update({k: _clean(v) for k, v in result.summary.as_dict().items()})
    data["cost_area"] = _clean(result.cost_area)
    data["cheapest_95"] = result.cheapest.as_dict() if result.cheapest else None
    data["fit_seconds"] = _clean(result.fit_seconds)
    data["predict_seconds"] = _clean(result.predict_seconds)
    data["notes"] = list(result.notes)
    if result.share_curve is not None:
        grid, perf = result.share_curve
        data["share_curve"] = {
            "strong_share": [_clean(x) for x in grid],
            "performance": [_clean(y) for y in perf],
        }
    data["cost_curve"] = _cost_curve_json(result, report)
    return data


def report_json(report: EvaluationReport) -> dict[str, Any]:
    """The whole report as plain JSON types (Decimals as strings)."""
    return {
        "mode": report.mode,
        "prompts": report.prompts,
        "models": report.models,
        "model_quality": {m: _clean(q) for m, q in report.model_quality.items()},
        "strong": report.strong,
        "weak": report.weak,
        "folds": report.folds,
        "seed": report.seed,
        "seconds": _clean(report.seconds),
        "cost": {
            "note": report.cost_note,
            "prices": report.prices,
            "usd_per_1k_requests": None if report.model_cost_per_1k is None else {
                m: str(money(v)) for m, v in report.model_cost_per_1k.items()
            },
        },
        "results": [result_json(r, report) for r in report.results],
    }
