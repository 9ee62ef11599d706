"""PNG plots of an evaluation: quality against strong-call share and against dollars.

One line per router, with the references RouteLLM draws: each model alone
(dashed), the random router (mean of seeds) and the oracle. A two-model report
gets a share panel and, when prices are known, a dollar panel beside it; an
N-model report gets the dollar panel. matplotlib (the `plots` extra) is
imported inside `save_plot` with the Agg backend so nothing needs a display.

Imports: numpy, the standard library, `evaluation.runner`, `evaluation.frontier`;
matplotlib lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.evaluation import frontier as fr
from interlock.evaluation.runner import EvaluationReport

_REFERENCE_STYLE = {
    "oracle": {"color": "black", "linestyle": ":", "linewidth": 1.5},
    "random": {"color": "grey", "linestyle": "-.", "linewidth": 1.2},
}
_MODEL_COLOURS = ("firebrick", "slategray", "darkgreen", "indigo", "saddlebrown", "olive")


def _style(kind: str) -> dict[str, Any]:
    return dict(_REFERENCE_STYLE.get(kind, {"linewidth": 1.8}))


def _share_panel(ax: Any, report: EvaluationReport) -> None:
    for result in report.results:
        if result.share_curve is None:
            continue
        grid, perf = result.share_curve
        ax.plot(100 * grid, perf, label=result.name, **_style(result.kind))
    for colour, model in zip(_MODEL_COLOURS, (report.strong, report.weak), strict=False):
        if model is not None:
            ax.axhline(report.model_quality[model], color=colour, linestyle="--",
                       linewidth=1, label=f"{model} alone")
    ax.set_xlabel("strong-model calls (%)")
    ax.set_ylabel("quality (mean score)")
    ax.set_title("Quality against strong-model calls")


def _cost_panel(ax: Any, report: EvaluationReport) -> None:
    if report.cost_bounds is None or report.model_cost_per_1k is None:
        return
    low, high = report.cost_bounds
    for result in report.results:
        if result.cost_curve is None:
            continue
        budget, quality = fr.on_cost_grid(result.cost_curve, low, high, points=201)
        ax.plot(1000 * budget, quality, label=result.name, **_style(result.kind))
    for colour, model in zip(_MODEL_COLOURS, report.models, strict=False):
        ax.scatter([float(report.model_cost_per_1k[model])], [report.model_quality[model]],
                   color=colour, marker="s", zorder=3, label=f"{model} alone")
    ax.set_xlabel("dollars per 1,000 requests")
    ax.set_ylabel("quality (mean score)")
    ax.set_title("Quality against cost")


def save_plot(report: EvaluationReport, path: str | Path, *, title: str | None = None) -> Path:
    """Draw the report and write it as a PNG at `path`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if report.mode == "two-model":
        panels.append(_share_panel)
    if report.cost_bounds is not None:
        panels.append(_cost_panel)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    try:
        for ax, draw in zip(axes[0], panels, strict=True):
            draw(ax, report)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=110)
    finally:
        plt.close(fig)
    return out
