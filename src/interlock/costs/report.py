"""The savings report: one self-contained HTML page from the ledger.

`build_report` reads the ledger (spend per day and deployment, requests per
group, fallbacks and errors per deployment) and prices every recorded
request on each group's model to find what sending everything to the most
expensive group would have cost. `render_html` draws the charts with
matplotlib (imported here lazily, Agg backend) as base64 PNGs inside the page,
so it opens offline: no script, font or stylesheet from anywhere else.

Imports: the standard library, `costs.prices`, `costs.queries`,
`costs.simulate`, `costs.usd`; matplotlib lazily.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from interlock.costs.prices import ModelPrice, lookup_model_price
from interlock.costs.queries import DeploymentHealth, LedgerReader, SpendLine
from interlock.costs.simulate import replay
from interlock.costs.usd import money


@dataclass
class ReportData:
    first: datetime | None
    last: datetime | None
    daily: dict[str, dict[date, Decimal]]
    groups: list[SpendLine]
    health: list[DeploymentHealth]
    recorded_usd: Decimal
    requests: int
    # What the successful requests would have cost with every one sent to each group.
    all_to_group: dict[str, Decimal] = field(default_factory=dict)
    unpriced_groups: list[str] = field(default_factory=list)
    # Successful requests whose cost is unknown (left out of recorded_usd and all_to_group).
    unpriced_rows: int = 0
    # Where the groups' prices for the comparison came from: "config" (the prices
    # the gateway recorded with) or "genai-prices" (the list prices, which may not be).
    prices_from: str = "config"

    @property
    def total_usd(self) -> Decimal:
        """Every recorded cost, as `interlock spend` totals it (failed requests that
        were billed, such as broken streams, included)."""
        return sum((g.cost_usd for g in self.groups), Decimal(0))

    @property
    def most_expensive(self) -> tuple[str, Decimal] | None:
        if not self.all_to_group:
            return None
        return max(self.all_to_group.items(), key=lambda kv: kv[1])

    @property
    def saving(self) -> tuple[Decimal, Decimal | None] | None:
        """(dollars saved against the most expensive group, as a percentage)."""
        top = self.most_expensive
        if top is None:
            return None
        saved = top[1] - self.recorded_usd
        return saved, (saved / top[1] * 100 if top[1] else None)


def group_prices(reader: LedgerReader,
                 configured: Mapping[str, ModelPrice | None] | None = None
                 ) -> dict[str, ModelPrice | None]:
    """Each group's price: from the config's deployments when given, else from the
    model the ledger recorded for the group's busiest deployment (genai-prices)."""
    out: dict[str, ModelPrice | None] = {}
    for group, deployment, provider, model, _count in reader.group_models():
        if group in out and out[group] is not None:
            continue
        price = None
        if configured is not None:
            price = configured.get(deployment or "") or configured.get(group)
        if price is None and model:
            price = lookup_model_price(model, provider)
        if price is None and deployment and deployment.startswith(group + "/"):
            # Rows without `model`: catalog names deployments "<group>/<provider>/<model>".
            price = lookup_model_price(deployment[len(group) + 1:])
        out[group] = price
    return out


# The line for rows with no group: refused before routing, or asking for a model
# no group serves (whose names, chosen by clients, are not made into groups).
NO_GROUP = "(unknown or refused)"


def build_report(reader: LedgerReader, prices: Mapping[str, ModelPrice | None],
                 *, since: datetime | None = None, prices_from: str = "config"
                 ) -> ReportData:
    groups = [dataclasses.replace(g, key=NO_GROUP) if g.key == "(none)" else g
              for g in reader.spend("group", since=since)]
    first, last = reader.period()
    result = replay(reader.usage(since=since), prices)
    return ReportData(
        first=first, last=last,
        daily=reader.daily_spend_by("deployment", since=since),
        groups=groups,
        health=reader.deployment_health(since=since),
        # Successful requests only, the same ones the alternatives are priced on
        # (with the first calls of their streams continued elsewhere: billed).
        recorded_usd=result.recorded_usd,
        requests=sum(g.requests for g in groups),
        unpriced_rows=result.unpriced,
        all_to_group=result.single_model,
        unpriced_groups=sorted(g for g, p in prices.items() if p is None),
        prices_from=prices_from,
    )


def summary_lines(data: ReportData) -> list[str]:
    # The same total as `interlock spend` (every row's known cost, failed ones'
    # too); the saving compares successful requests (their continued streams'
    # first calls included), so that part is named.
    total = data.total_usd
    lines = [f"{data.requests:,} requests, {money(total)} recorded"
             + (f" ({data.first:%Y-%m-%d} to {data.last:%Y-%m-%d})"
                if data.first and data.last else "")
             + (f"; {money(data.recorded_usd)} of it on successful requests, which the "
                "saving below compares" if total != data.recorded_usd else "")]
    for g in data.groups:
        share = g.requests / data.requests * 100 if data.requests else 0
        lines.append(f"  {g.key:<24} {g.requests:>8,} requests ({share:5.1f}%)  "
                     f"{money(g.cost_usd)}")
    top, saving = data.most_expensive, data.saving
    if top and saving:
        pct = f" ({saving[1]:.1f}%)" if saving[1] is not None else ""
        lines.append(f"Everything on {top[0]} would have cost {money(top[1])}: "
                     f"routing saved {money(saving[0])}{pct}")
    else:
        lines.append("Saving unknown: no group's price is known")
    if data.unpriced_rows:
        lines.append(f"  ({data.unpriced_rows:,} requests with no known cost are left out of "
                     "both figures)")
    if top and data.prices_from != "config":
        lines.append("  (the groups are priced at genai-prices' list prices; the recorded "
                     "cost used the gateway config's, which may differ: give --config for a "
                     "like-for-like saving)")
    failing = [h for h in data.health if h.errors or h.fallbacks]
    for h in failing:
        lines.append(f"  {h.deployment}: {h.errors} errors, {h.fallbacks} fallbacks")
    return lines


# --------------------------------------------------------------------------- charts


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_spend_over_time(data: ReportData) -> str | None:
    if not data.daily:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    days = sorted({d for series in data.daily.values() for d in series})
    bottom = [0.0] * len(days)
    for name, series in sorted(data.daily.items()):
        values = [float(series.get(d, 0)) for d in days]
        ax.bar([d.isoformat() for d in days], values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("USD")
    ax.set_title("Spend per day by deployment")
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    return _png(fig)


def chart_group_share(data: ReportData) -> str | None:
    if not data.groups:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(data.groups)))
    shares = [g.requests / data.requests * 100 if data.requests else 0 for g in data.groups]
    ax.barh([g.key for g in data.groups], shares, color="#4C72B0")
    ax.set_xlabel("% of requests")
    ax.set_title("Share of requests per model group")
    return _png(fig)


def chart_saving(data: ReportData) -> str | None:
    if not data.all_to_group:
        return None
    plt = _pyplot()
    labels = ["recorded", *(f"all {g}" for g in data.all_to_group)]
    values = [float(data.recorded_usd), *(float(v) for v in data.all_to_group.values())]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(labels, values, color=["#55A868", *["#C44E52"] * len(data.all_to_group)])
    ax.set_ylabel("USD")
    ax.set_title("Recorded cost against sending everything to one group")
    ax.tick_params(axis="x", labelsize=7)
    return _png(fig)


def chart_health(data: ReportData) -> str | None:
    if not data.health:
        return None
    plt = _pyplot()
    names = [h.deployment for h in data.health]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar([i - 0.2 for i in x], [h.errors for h in data.health], width=0.4, label="errors")
    ax.bar([i + 0.2 for i in x], [h.fallbacks for h in data.health], width=0.4,
           label="fallbacks")
    ax.set_xticks(list(x), names, fontsize=7, rotation=20)
    ax.set_title("Errors and fallbacks per deployment")
    ax.legend(fontsize=7)
    return _png(fig)


# --------------------------------------------------------------------------- page

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#222;max-width:60em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:right}td:first-child,th:first-child{text-align:left}h1{font-size:1.5em}
.big{font-size:1.3em}img{max-width:100%}
"""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: str | None, alt: str) -> str:
    if png is None:
        return f"<p>No data for: {html.escape(alt)}.</p>"
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{png}"></p>'


def render_html(data: ReportData, *, title: str = "Interlock savings report") -> str:
    summary = "".join(f"<li>{html.escape(line.strip())}</li>" for line in summary_lines(data))
    groups = _table(
        ["group", "requests", "errors", "input tokens", "output tokens", "cost"],
        [[g.key, f"{g.requests:,}", f"{g.errors:,}", f"{g.input_tokens:,}",
          f"{g.output_tokens:,}", money(g.cost_usd)] for g in data.groups])
    health = _table(
        ["deployment", "requests", "errors", "fallbacks", "attempts"],
        [[h.deployment, f"{h.requests:,}", f"{h.errors:,}", f"{h.fallbacks:,}",
          f"{h.attempts:,}"] for h in data.health])
    alternatives = _table(
        ["everything sent to", "would have cost"],
        [[g, money(v)] for g, v in sorted(data.all_to_group.items(), key=lambda kv: -kv[1])])
    unpriced = (f"<p>No price known for: {html.escape(', '.join(data.unpriced_groups))}.</p>"
                if data.unpriced_groups else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<ul class="big">{summary}</ul>
<h2>Spend over time</h2>{_img(chart_spend_over_time(data), "spend per day by deployment")}
<h2>Requests per model group</h2>{_img(chart_group_share(data), "share of requests per group")}
{groups}
<h2>Saving</h2>{_img(chart_saving(data), "recorded cost against single groups")}
{alternatives}{unpriced}
<h2>Fallbacks and errors</h2>{_img(chart_health(data), "errors and fallbacks per deployment")}
{health}
</body></html>
"""
