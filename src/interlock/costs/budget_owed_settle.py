"""A settle a budget gate owes Redis (`budget_redis_counts`): kept while Redis
is away or a count waits for its seeding, sent once it can be.

Imports: the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class OwedSettle(NamedTuple):
    """A settle owed to Redis: of a reservation made there
    (`budget_scripts.SETTLE`), or, with `ended` (Unix seconds), the cost of a
    call counted in memory (`budget_scripts.SPEND`, with its budgets' seeding
    marks when there is a ledger). `ends`: when each key's period ends (Unix
    seconds); a key whose period has ended is sent nothing (no call counts on
    it any more, and its seeding mark may be gone for good: only current
    periods are seeded)."""

    keys: list[str]
    ticket_id: str
    actual: int
    ends: list[float]
    ended: float | None = None
    marks: tuple[str, ...] = ()

    def only(self, indices: Sequence[int]) -> OwedSettle:
        """This settle for the keys at `indices` alone."""
        return self._replace(keys=[self.keys[i] for i in indices],
                             ends=[self.ends[i] for i in indices],
                             marks=tuple(self.marks[i] for i in indices) if self.marks else ())
