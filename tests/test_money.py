"""The money rules of DESIGN.md: Decimal only, one precision, half-up display."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneflow.lib import money

amounts = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=12, allow_nan=False)


def test_display_rounds_half_up_at_two_places() -> None:
    assert money.display(Decimal("0.005")) == Decimal("0.01")
    assert money.display(Decimal("0.015")) == Decimal("0.02")
    assert money.display(Decimal("2.675")) == Decimal("2.68")  # a float would say 2.67
    assert money.display(Decimal("-0.005")) == Decimal("-0.01")
    assert money.display_text(Decimal("3")) == "3.00"


def test_a_charge_too_small_for_cents_keeps_two_significant_digits() -> None:
    assert money.display_text(Decimal("0.000418")) == "0.00042"
    assert money.display_text(Decimal("0.0049")) == "0.0049"
    assert money.display_text(Decimal("-0.0000015")) == "-0.0000015"
    assert money.display_text(Decimal("0.005")) == "0.01"
    assert money.display_text(Decimal(0)) == "0.00"


@given(st.decimals(min_value=Decimal("-0.0049"), max_value=Decimal("0.0049"), places=12, allow_nan=False))
def test_no_amount_that_is_not_zero_shows_as_zero(value: Decimal) -> None:
    shown = money.display(value)
    assert (shown == 0) == (value == 0)
    assert abs(shown - value) <= abs(value) * Decimal("0.05"), "two significant digits: within 5 %"


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        money.internal(0.1)  # type: ignore[arg-type]


@given(amounts.filter(lambda value: value == 0 or abs(value) >= Decimal("0.005")))
def test_display_is_half_up_and_within_half_a_cent(value: Decimal) -> None:
    shown = money.display(value)
    assert abs(shown - value) <= Decimal("0.005")
    assert shown.as_tuple().exponent == -2
    remainder = abs(value) * 100 % 1
    if remainder == Decimal("0.5"):
        assert abs(shown) > abs(value), "ties go away from zero"


@given(st.lists(amounts, min_size=1, max_size=20))
def test_totals_are_rounded_once(parts: list[Decimal]) -> None:
    total = money.display(sum(parts, money.ZERO))
    assert abs(total - sum(parts, money.ZERO)) <= Decimal("0.005")


@given(amounts)
def test_internal_precision_is_exact_to_ten_places(value: Decimal) -> None:
    assert abs(money.internal(value) - value) <= Decimal("0.5e-10")
