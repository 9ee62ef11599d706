"""Which calls a budget covers, and the period a moment falls in: a day or a
month of the calendar in UTC, or a run of hours counted from the Unix epoch.

Imports: the standard library, `catalog`, `costs.settings`, `types`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from interlock.catalog import Deployment
from interlock.costs.settings import Budget
from interlock.types import ChatRequest

# How long a count outlives its period (in Redis and in memory): a call admitted
# just before the end still finds its count when it settles.
GRACE = 3600


def ttl_until(end: float, now: float) -> int:
    """Seconds from `now` that the count of a period ending at `end` (Unix
    seconds) lives: to the end, then the grace. At least 1, for Redis's EXPIRE
    deletes a key given 0 or less.

    Worked out at each send to Redis, never carried from when a call was
    admitted: a settle sent hours later (after an outage) would keep its count
    that many hours past its period. Relative seconds, not an EXPIREAT: `end`
    and `now` come from the replica's own clock, which also chose the
    period's key, so the count lives the grace past the period's end as that
    replica sees it. A replica off by X moves the expiry by X (one behind
    keeps the key until end + grace + X, true time), exactly as long as it
    still writes to that key; Redis's clock moves nothing (an absolute time,
    on a Redis clock ahead by more than the grace, would drop a count a
    replica still uses). The script's time on its way (a stall) adds to it."""
    return max(1, int(end - now) + GRACE)


def period_id(budget: Budget, now: float) -> tuple[str, float]:
    """(id of the period `now` falls in, seconds until it ends); calendar periods in UTC."""
    pid, _, end = period_bounds(budget, now)
    return pid, end - now


def period_bounds(budget: Budget, now: float) -> tuple[str, float, float]:
    """(id, start, end) of the period `now` falls in, the times as Unix seconds."""
    moment = datetime.fromtimestamp(now, UTC)
    if budget.period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start.timestamp(), start.timestamp() + 86_400
    if budget.period == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        return start.strftime("%Y-%m"), start.timestamp(), nxt.timestamp()
    length = float(budget.period) * 3600
    index = int(now // length)
    return f"{budget.period:g}h-{index}", index * length, (index + 1) * length


def covers(budget: Budget, deployment: Deployment, request: ChatRequest) -> bool:
    kind, name = budget.target
    if kind == "deployment":
        return deployment.name == name
    if kind == "provider":
        return deployment.provider == name
    if kind == "end_user":  # a `user` of "" names no one, as none does
        return bool(request.user) and name in ("*", request.user)
    if kind == "api_key":
        return request.api_key_id == name
    return deployment.group == name
