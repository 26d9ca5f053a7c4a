"""Reads for billing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum

from billing.models import BillingAccount, LedgerEntry, Price, UsageRollup
from oneflow.lib import money


def price_at(*, public_model: str, moment: datetime) -> Price | None:
    """The price version of a model in force at ``moment``: the newest one not after it."""
    return (
        Price.objects.filter(public_model=public_model, effective_from__lte=moment).order_by("-effective_from").first()
    )


def ledger_sum(*, account: BillingAccount) -> Decimal:
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return money.internal(total or money.ZERO)


USAGE_GROUPS = {"day": "bucket", "model": "public_model", "key": "api_key__public_id", "provider": "provider"}


def usage_summary(*, organization_id: int, start: datetime, end: datetime, group_by: str) -> list[dict[str, Any]]:
    """Usage per day, model, key or provider in [start, end), from the daily rollups."""
    field = USAGE_GROUPS[group_by]
    rows = (
        UsageRollup.objects.filter(
            organization_id=organization_id, period=UsageRollup.Period.DAY, bucket__gte=start, bucket__lt=end
        )
        .values(field)
        .annotate(
            requests=Sum("requests"),
            errors=Sum("errors"),
            prompt_tokens=Sum("prompt_tokens"),
            cached_tokens=Sum("cached_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by(field)
    )
    return [{"group": row.pop(field), **row} for row in rows]


def ledger_of(*, organization_id: int) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(account__organization_id=organization_id).order_by("-created_at", "-pk")
