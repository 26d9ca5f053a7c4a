"""Credit reads: balances, the ledger and its sum, and what one request was charged
and refunded.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet, Sum

from billing.models import (
    BillingAccount,
    LedgerEntry,
)
from oneflow.lib import money


def ledger_sum(*, account: BillingAccount) -> Decimal:
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return money.internal(total or money.ZERO)


def ledger_of(*, organization_id: int) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(account__organization_id=organization_id).order_by("-created_at", "-pk")


def credits_balance(*, organization_id: int) -> Decimal:
    balance = BillingAccount.objects.filter(organization_id=organization_id).values_list("balance", flat=True).first()
    return balance if balance is not None else money.ZERO


# --- Refunds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refundable:
    """What one request was charged and refunded, in credits (both positive)."""

    charged: Decimal
    refunded: Decimal
    refunds: int  # how many refund entries, which numbers the next one's idempotency key

    @property
    def remaining(self) -> Decimal:
        return max(self.charged - self.refunded, money.ZERO)


def refundable(*, organization_id: int, request_id: str) -> Refundable:
    # Index billing_ledger_request: a request has one charge and few refunds.
    entries = LedgerEntry.objects.filter(
        account__organization_id=organization_id,
        request_id=request_id,
        kind__in=[LedgerEntry.Kind.CHARGE, LedgerEntry.Kind.REFUND],
    ).values_list("kind", "amount")
    charged = refunded = money.ZERO
    refunds = 0
    for kind, amount in entries:
        if kind == LedgerEntry.Kind.CHARGE:
            charged -= amount
        else:
            refunded += amount
            refunds += 1
    return Refundable(charged=money.internal(charged), refunded=money.internal(refunded), refunds=refunds)
