"""Reads for billing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Sum

from billing.models import BillingAccount, LedgerEntry, Price
from oneflow.lib import money


def price_at(*, public_model: str, moment: datetime) -> Price | None:
    """The price version of a model in force at ``moment``: the newest one not after it."""
    return (
        Price.objects.filter(public_model=public_model, effective_from__lte=moment).order_by("-effective_from").first()
    )


def ledger_sum(*, account: BillingAccount) -> Decimal:
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return money.internal(total or money.ZERO)
