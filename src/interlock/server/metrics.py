"""`GET /metrics`: the gateway's state in Prometheus' text format.

Everything here is read from state the gateway keeps anyway (each deployment's
breaker, its running counts and latency, the ledger's counters, the budgets'
counts, the client keys' limits), when scraped: a request pays nothing for it,
but for the usage counters (`usage_counters`: requests, tokens, dollars), a
few additions where its ledger row is made. Counts are this process's since it started; with
`--workers N` each worker answers for itself, as `/health/ledger` does, and
labels every sample `worker="<its pid>"`, so that a scraper that reaches
different workers sees different series, not a counter going back and forth.

The exposition format is a few lines of text per sample (the Prometheus
documentation's "Exposition formats"), written here rather than through
prometheus_client, whose registry and collectors would be a dependency for
what is a rendering of a dozen values. Served behind the master key, like the
other health pages that tell how much traffic the gateway serves.

Imports: the standard library, `gateway`, `usage_counters`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from typing import Any

from interlock.gateway import Gateway
from interlock.usage_counters import DeploymentUsage, UsageCounters

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_STATES = ("healthy", "cooling", "half_open", "unavailable")


def _label(value: str) -> str:
    # The format's escapes for a label value: backslash, double quote, line feed.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    # Whole numbers as integers (a counter past a million keeps every digit, which
    # `:g` would round away); others as Python's shortest exact repr.
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
    number = _number(value)
    return f"{name}{{{inner}}} {number}" if inner else f"{name} {number}"


def _family(name: str, kind: str, help_text: str,
            samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [_sample(name, labels, value) for labels, value in samples]
    return lines


async def render(gateway: Gateway) -> bytes:
    """The metrics page: one family per quantity, each deployment a sample."""
    rows = gateway.dispatcher.health()
    where = [({"deployment": r.deployment, "group": r.group, "provider": r.provider}, r)
             for r in rows]
    lines: list[str] = []
    lines += _family("interlock_deployment_calls_total", "counter",
                     "Upstream calls this process made to the deployment and that ended.",
                     ((labels, r.requests) for labels, r in where))
    lines += _family("interlock_deployment_failures_total", "counter",
                     "Upstream calls to the deployment that failed.",
                     ((labels, r.failures) for labels, r in where))
    lines += _family("interlock_deployment_in_flight", "gauge",
                     "Calls to the deployment picked and not yet over (streams until "
                     "they end).",
                     ((labels, r.in_flight) for labels, r in where))
    lines += _family("interlock_deployment_latency_ms", "gauge",
                     "Moving average of the deployment's call latency (absent until "
                     "it has answered).",
                     ((labels, r.latency_ms) for labels, r in where
                      if r.latency_ms is not None))
    lines += _family("interlock_deployment_latency_average_seconds", "gauge",
                     "Moving average of the deployment's call latency, in seconds (absent "
                     "until it has answered).",
                     ((labels, r.latency_ms / 1000) for labels, r in where
                      if r.latency_ms is not None))
    lines += _family("interlock_deployment_error_rate", "gauge",
                     "Moving average of the deployment's share of failed calls.",
                     ((labels, r.error_rate) for labels, r in where))
    lines += _family("interlock_deployment_state", "gauge",
                     "1 for the deployment's breaker state, 0 for the others.",
                     (({**labels, "state": state}, float(r.state == state))
                      for labels, r in where for state in _STATES))
    lines += _family("interlock_deployment_cooldown_remaining_seconds", "gauge",
                     "Seconds until a cooling deployment is tried again.",
                     ((labels, r.cooldown_remaining_s) for labels, r in where))
    lines += _usage(where, gateway.recorder.usage)
    lines += _ledger(gateway.ledger.stats() if gateway.ledger is not None else None)
    if gateway.budgets is not None:
        # From Redis when the budgets are shared through it: the count all replicas see.
        lines += _budgets(await gateway.budgets.astatus(), gateway.budgets.refusals)
    limits = gateway.key_limits
    if limits.limited:
        lines += _family("interlock_client_key_in_flight", "gauge",
                         "Requests of the client key this process is serving (keys with "
                         "limits only).",
                         (({"key": key}, n) for key, n in sorted(limits.in_flight().items())))
        lines += _family("interlock_client_key_refusals_total", "counter",
                         "Requests refused with a 429 because the client key was over "
                         "one of its own limits.",
                         (({"key": key, "limit": limit}, n)
                          for (key, limit), n in sorted(limits.refusals.items())))
    if multiprocessing.parent_process() is not None:  # a worker of `serve --workers N`
        lines = with_worker(lines, os.getpid())
    return ("\n".join(lines) + "\n").encode()


def with_worker(lines: list[str], pid: int) -> list[str]:
    """`lines` with a `worker` label first on each sample (comments unchanged)."""
    label = f'worker="{pid}"'
    out = []
    for line in lines:
        if line.startswith("#"):
            out.append(line)
            continue
        name, _, rest = line.rpartition(" ")  # label values may hold spaces; numbers not
        if name.endswith("}"):
            head, _, inner = name[:-1].partition("{")
            out.append(f"{head}{{{label},{inner}}} {rest}")
        else:
            out.append(f"{name}{{{label}}} {rest}")
    return out


def _usage(where: list[tuple[dict[str, str], Any]], counters: UsageCounters) -> list[str]:
    """What the requests that ended on each deployment used and cost, and all
    requests by outcome. Every deployment has its samples from the start (zeros
    until used), so that a rate over the first request is not lost."""
    # `.get` on the defaultdict: a scrape adds no entries.
    tallies = [(labels, counters.by_deployment.get(labels["deployment"]) or DeploymentUsage())
               for labels, _ in where]
    tokens = (("input", "input_tokens"), ("output", "output_tokens"),
              ("cached_input", "cached_input_tokens"), ("reasoning", "reasoning_tokens"))
    return (
        _family("interlock_requests_total", "counter",
                "Requests this process ended, by outcome: ok, or the class of the error "
                "they ended with (refused ones included).",
                (({"outcome": outcome}, n) for outcome, n in counters.outcomes().items()))
        + _family("interlock_deployment_requests_total", "counter",
                  "Requests that ended on the deployment (it answered, or was the last "
                  "tried), by outcome: ok, or the class of the error.",
                  (({**labels, "outcome": outcome}, n) for labels, t in tallies
                   for outcome, n in {"ok": t.answered, **t.errors}.items()))
        + _family("interlock_deployment_tokens_total", "counter",
                  "Tokens of the requests that ended on the deployment, and of the streams "
                  "that broke there and were continued elsewhere, as the ledger records "
                  "them (cached_input is part of input, reasoning part of output).",
                  (({**labels, "direction": direction}, getattr(t, field))
                   for labels, t in tallies for direction, field in tokens))
        + _family("interlock_deployment_cost_usd_total", "counter",
                  "Dollars the requests that ended on the deployment cost, and the streams "
                  "that broke there and were continued elsewhere, as priced for the "
                  "ledger; those of unknown cost are left out, and counted in "
                  "interlock_deployment_unpriced_requests_total.",
                  ((labels, float(t.cost_usd)) for labels, t in tallies))
        + _family("interlock_deployment_unpriced_requests_total", "counter",
                  "Requests that ended on the deployment, and streams that broke there "
                  "and were continued elsewhere, whose cost is unknown (no price for it, "
                  "or a failure that may have been billed): their tokens are counted, "
                  "their dollars are not.",
                  ((labels, t.unpriced) for labels, t in tallies)))


def _budgets(rows: list[dict[str, Any]], refusals: dict[tuple[str, str, str], int]
             ) -> list[str]:
    where = [({"target": r["target"], "name": r["name"], "period": str(r["period"])}, r)
             for r in rows]
    # Each budget's, 0 until it refuses; a per-end-user one ("*") and a key's
    # budget since removed appear once they have refused.
    refused = {(r["target"], r["name"], str(r["period"])): 0 for r in rows} | refusals
    return (
        _family("interlock_budget_spent_usd", "gauge",
                "Dollars spent against the budget in its current period.",
                ((labels, float(r["spent_usd"])) for labels, r in where))
        + _family("interlock_budget_reserved_usd", "gauge",
                  "Dollars held for calls in flight against the budget.",
                  ((labels, float(r["reserved_usd"])) for labels, r in where))
        + _family("interlock_budget_limit_usd", "gauge", "The budget's limit per period.",
                  ((labels, float(r["limit_usd"])) for labels, r in where))
        + _family("interlock_budget_exhausted", "gauge",
                  "1 while the budget refuses calls until its period ends.",
                  ((labels, float(r["exhausted"])) for labels, r in where))
        + _family("interlock_budget_resets_in_seconds", "gauge",
                  "Seconds until the budget's period ends.",
                  ((labels, r["resets_in_s"]) for labels, r in where))
        + _family("interlock_budget_refusals_total", "counter",
                  "Calls this process kept from a deployment because the budget was spent.",
                  (({"target": kind, "name": name, "period": period}, n)
                   for (kind, name, period), n in sorted(refused.items()))))


def _ledger(stats: dict[str, Any] | None) -> list[str]:
    if stats is None:  # no ledger configured: no samples, rather than zeros
        return []
    return (
        _family("interlock_ledger_rows_written_total", "counter",
                "Ledger rows written to the database.", [({}, stats["written"])])
        + _family("interlock_ledger_rows_dropped_total", "counter",
                  "Ledger rows lost (buffer full, or a row the database refused).",
                  [({}, stats["dropped"])])
        + _family("interlock_ledger_rows_pending", "gauge",
                  "Ledger rows waiting to be written.", [({}, stats["pending"])])
        + _family("interlock_ledger_write_failures_total", "counter",
                  "Ledger batch writes that failed and were retried.",
                  [({}, stats["write_failures"])]))
