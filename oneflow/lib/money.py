"""Money: one Decimal precision, one rounding rule, defined here and nowhere else.

Amounts are credits (the customer's unit) or USD (provider list prices), both
as ``Decimal``, never float. Internally every amount carries INTERNAL_PLACES
decimal places; what a person sees is rounded half-up to 2 places, once, at
the edge — a total is rounded after summing, never summed from rounded parts.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_HALF_UP, Decimal

INTERNAL_PLACES = 10
INTERNAL_QUANTUM = Decimal(1).scaleb(-INTERNAL_PLACES)
DISPLAY_QUANTUM = Decimal("0.01")
TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)  # prices are per 1M tokens
ZERO = Decimal(0)

# Enough digits for any amount at INTERNAL_PLACES (balances up to 10^28).
CONTEXT = decimal.Context(prec=38, rounding=ROUND_HALF_UP, traps=[decimal.InvalidOperation, decimal.Overflow])


def to_decimal(value: Decimal | int | str) -> Decimal:
    """A Decimal from an exact source; floats are refused, since they are not exact."""
    if isinstance(value, float):
        raise TypeError("money is never a float; pass a str, int or Decimal")
    return Decimal(value)


def internal(value: Decimal | int | str) -> Decimal:
    """Rounds to the internal precision (half-up)."""
    return to_decimal(value).quantize(INTERNAL_QUANTUM, context=CONTEXT)


def display(value: Decimal | int | str) -> Decimal:
    """What a person sees: half-up to 2 decimal places; but an amount that is not
    zero never shows as 0.00: it keeps two significant digits (a request that cost
    0.000418 credits shows 0.00042), so a small charge is never hidden."""
    amount = to_decimal(value)
    shown = amount.quantize(DISPLAY_QUANTUM, context=CONTEXT)
    if shown or not amount:
        return shown
    return amount.quantize(Decimal(1).scaleb(amount.adjusted() - 1), context=CONTEXT)


def display_text(value: Decimal | int | str) -> str:
    return f"{display(value):f}"
