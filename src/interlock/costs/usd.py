"""Dollar amounts as the budgets count them (whole nano-dollars, so that sums
stay exact integers in memory and in Redis) and as text for people and JSON.

Below both the budgets and the ledger's readers (`queries`), and free of
sqlalchemy, so the request path's budgets need not load it to format a dollar.

Imports: the standard library.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

NANO = Decimal("1e-9")


def to_nano(usd: Decimal) -> int:
    return int((usd / NANO).to_integral_value(ROUND_CEILING))


def usd_text(value: Decimal) -> str:
    """Dollars for JSON: '0.002009', '0'; never '0E-9' (a sum of nano-dollars
    that came to nothing) or a tail of zeros, which scripts read as other figures."""
    return f"{value.normalize():f}"


def plain_usd(nano: int) -> str:
    """Nano-dollars as plain dollars: '0.0135', '0' (not '0.013500000', '0E-9')."""
    return usd_text(nano * NANO)
