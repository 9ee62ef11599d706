"""Dollar amounts as the budgets count them (whole nano-dollars, so that sums
stay exact integers in memory and in Redis) and as text for people (`money`,
for `interlock spend`, `cost` and `report`), JSON (`usd_text`, `plain_usd`) and
the x-interlock-cost-usd header (`header_usd`).

Below both the budgets and the ledger's readers (`queries`), and free of
sqlalchemy, so the request path's budgets need not load it to format a dollar.

Imports: the standard library.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

NANO = Decimal("1e-9")
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")


def to_nano(usd: Decimal) -> int:
    return int((usd / NANO).to_integral_value(ROUND_CEILING))


def usd_text(value: Decimal) -> str:
    """Dollars for JSON: '0.002009', '0'; never '0E-9' (a sum of nano-dollars
    that came to nothing) or a tail of zeros, which scripts read as other figures."""
    return f"{value.normalize():f}"


def plain_usd(nano: int) -> str:
    """Nano-dollars as plain dollars: '0.0135', '0' (not '0.013500000', '0E-9')."""
    return usd_text(nano * NANO)


def money(value: Decimal | None) -> str:
    """Dollars for people: to the cent, as "$1,234.50"; an amount under a dollar
    that is not whole cents to six decimals, as "$0.000417", since one LLM call
    often costs a fraction of a cent and "$0.00" would hide it; and one under half
    a millionth (a cached token, an embedding) to two significant figures, as
    "$0.00000016": a cost that is not nothing is never shown as nothing."""
    if value is None:
        return "unknown"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if value and size < 1 and value.quantize(CENT) != value:
        fine = size.quantize(MICRO)
        if not fine:
            fine = two_figures(size)
        if fine < 1:  # else it rounded up to a dollar, said to the cent below
            return f"{sign}${f'{fine:f}'.rstrip('0')}"
    rounded = size.quantize(CENT)
    return f"{sign if rounded else ''}${rounded:,.2f}"


def header_usd(value: Decimal) -> str:
    """Dollars for the x-interlock-cost-usd header: to 8 decimals, as
    '0.00412500', short for what a call costs; a cost that is not nothing but
    rounds to nothing there (about half a hundred-millionth or less) to two
    significant figures, as '0.0000000031', since '0.00000000' reads as free.
    Plain decimals always, never '3.1E-9': clients parse the header as a number."""
    text = f"{value:.8f}"
    if not value or text.strip("-0."):  # the common case: one format, one test
        return text
    return f"{two_figures(value):f}"


def two_figures(value: Decimal) -> Decimal:
    """`value` to two significant figures: what a tiny cost is shown as."""
    return value.quantize(Decimal(1).scaleb(value.adjusted() - 1))
