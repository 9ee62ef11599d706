"""Dollar text: the budgets' nano-dollar counts and the ledger readers' sums print alike."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from interlock.costs.budgets import plain_usd as plain_usd_from_budgets
from interlock.costs.queries import usd_text as usd_text_from_queries
from interlock.costs.usd import NANO, money, plain_usd, usd_text


@pytest.mark.parametrize(("nano", "text"), [
    (0, "0"), (1, "0.000000001"), (13_500_000, "0.0135"), (5_000_000_000, "5"),
    (4_990_000_000, "4.99"), (10**18, "1000000000"), (-2_500_000, "-0.0025"),
])
def test_nano_dollars_print_as_plain_dollars(nano: int, text: str) -> None:
    assert plain_usd(nano) == text
    assert plain_usd_from_budgets(nano) == text  # still importable where it was


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("0E-9"), "0"), (Decimal("0.002009000"), "0.002009"), (Decimal("12.50"), "12.5"),
    (Decimal("1E+2"), "100"), (Decimal("0.000000001"), "0.000000001"), (Decimal("-0"), "-0"),
])
def test_decimal_sums_print_as_plain_dollars(value: Decimal, text: str) -> None:
    assert usd_text(value) == text
    assert usd_text_from_queries(value) == text  # still importable where it was


@pytest.mark.parametrize("nano", [0, 7, 13_500_000, 123_456_789_012])
def test_a_count_and_the_same_sum_print_the_same(nano: int) -> None:
    assert plain_usd(nano) == usd_text(Decimal(nano) * NANO)


def test_the_budgets_format_dollars_without_loading_sqlalchemy() -> None:
    # The gate runs on the request path; the ledger's readers need sqlalchemy,
    # the budgets must not load it to print a dollar amount.
    code = "import sys, interlock.costs.budgets; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_the_budgets_tell_a_mocked_answer_without_loading_the_http_stack() -> None:
    # They imported `mock_text` from the mock adapter, which loads aiohttp: a
    # sideways import that made `import interlock.costs.budgets` load it.
    code = "import sys, interlock.costs.budgets; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("value", "text"), [
    (None, "unknown"), (Decimal(0), "$0.00"), (Decimal("1234.5"), "$1,234.50"),
    (Decimal("0.05"), "$0.05"), (Decimal("0.000417"), "$0.000417"),
    (Decimal("0.0004174"), "$0.000417"), (Decimal("0.0000006"), "$0.000001"),
    # Under half a millionth: two significant figures, not "$0." (it was).
    (Decimal("0.00000016"), "$0.00000016"), (Decimal("0.000000163"), "$0.00000016"),
    (Decimal("0.000000001"), "$0.000000001"), (Decimal("-0.00000016"), "-$0.00000016"),
    # Rounded up to a dollar: said to the cent, not "$1.".
    (Decimal("0.9999996"), "$1.00"), (Decimal("-2.5"), "-$2.50"),
])
def test_money_for_people_never_shows_a_cost_as_nothing(value: Decimal | None,
                                                        text: str) -> None:
    assert money(value) == text
