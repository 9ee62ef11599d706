"""Dollar amounts as the budgets count them (whole nano-dollars, so that sums
stay exact integers in memory and in Redis) and as text for people and JSON.

Imports: the standard library.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

NANO = Decimal("1e-9")


def to_nano(usd: Decimal) -> int:
    return int((usd / NANO).to_integral_value(ROUND_CEILING))


def plain_usd(nano: int) -> str:
    """Nano-dollars as plain dollars: '0.0135', '0' (not '0.013500000', '0E-9')."""
    return f"{(nano * NANO).normalize():f}"
