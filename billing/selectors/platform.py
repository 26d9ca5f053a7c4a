"""Usage reads for operators: the whole platform's requests, errors and money per
bucket of a window, and the organizations and models that spent the most.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Sum

from billing.models import (
    BillingAccount,
    UsageRollup,
)
from oneflow.lib import money

# Window name -> the rollup period it reads and how many buckets of it, the current one included.
PLATFORM_WINDOWS = {
    "24h": (UsageRollup.Period.HOUR, 24),
    "7d": (UsageRollup.Period.DAY, 7),
    "30d": (UsageRollup.Period.DAY, 30),
}
PLATFORM_DEFAULT_WINDOW = "24h"
PLATFORM_TOP = 10


@dataclass(frozen=True)
class UsageSums:
    """Requests and money of one bucket, organization or model, summed at internal precision."""

    requests: int = 0
    errors: int = 0  # answered 4xx or 5xx, as the rollups count them
    cost: Decimal = money.ZERO  # credits priced for the requests: what customers are charged
    provider_cost_usd: Decimal = money.ZERO  # what providers charge OneFlow

    @property
    def error_rate(self) -> float | None:
        """Errors per request (0..1); None without requests."""
        return self.errors / self.requests if self.requests else None

    @property
    def margin_usd(self) -> Decimal:
        """What customers paid, converted from credits, less what providers charged."""
        return money.CONTEXT.divide(self.cost, Decimal(settings.CREDITS_PER_USD)) - self.provider_cost_usd

    def __add__(self, other: UsageSums) -> UsageSums:
        return UsageSums(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            cost=self.cost + other.cost,
            provider_cost_usd=self.provider_cost_usd + other.provider_cost_usd,
        )


@dataclass(frozen=True)
class UsageLeader:
    """One of the organizations or models that spent the most in a window."""

    key: str | int  # organization id, or public model name
    name: str
    sums: UsageSums


@dataclass(frozen=True)
class PlatformUsage:
    """Every organization's usage in a window, from the rollups of one period."""

    window: str  # a key of PLATFORM_WINDOWS
    period: str  # UsageRollup.Period: the buckets' length
    since: datetime  # start of the first bucket
    buckets: list[tuple[datetime, UsageSums]]  # every bucket of the window, oldest first, zeros where idle
    top_organizations: list[UsageLeader]  # the biggest spenders first, at most PLATFORM_TOP
    top_models: list[UsageLeader]
    credits_outstanding: Decimal  # every organization's balance: credits sold and not yet spent

    @property
    def totals(self) -> UsageSums:
        """Summed from the buckets' exact sums: rounding happens once, where it is shown."""
        return sum((sums for _, sums in self.buckets), UsageSums())


_ROLLUP_SUMS = {
    "requests": Sum("requests"),
    "errors": Sum("errors"),
    "cost": Sum("cost"),
    "provider_cost_usd": Sum("provider_cost_usd"),
}


def _sums(row: Mapping[str, Any]) -> UsageSums:
    return UsageSums(
        requests=row["requests"] or 0,
        errors=row["errors"] or 0,
        cost=money.internal(row["cost"] or money.ZERO),
        provider_cost_usd=money.internal(row["provider_cost_usd"] or money.ZERO),
    )


def _window_start(period: str, buckets: int, now: datetime) -> datetime:
    """The first bucket of a window of ``buckets`` that ends with the one holding ``now`` (UTC)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if period == UsageRollup.Period.HOUR:
        return hour - timedelta(hours=buckets - 1)
    return hour.replace(hour=0) - timedelta(days=buckets - 1)


def platform_usage(*, window: str, now: datetime, top: int = PLATFORM_TOP) -> PlatformUsage:
    """Requests, errors and money of every organization per bucket of ``window``, and
    the ``top`` organizations and models by spend.

    Four queries whatever the number of rollup rows: three grouped sums over the
    window's rollups (at most one row per bucket, then ``top`` rows each) and one sum
    of the balances (one row per organization). Hourly rollups serve the 24-hour
    window, daily ones the longer windows; the newest bucket is the one still running.
    """
    period, count = PLATFORM_WINDOWS[window]
    since = _window_start(period, count, now)
    step = timedelta(hours=1) if period == UsageRollup.Period.HOUR else timedelta(days=1)
    rollups = UsageRollup.objects.filter(period=period, bucket__gte=since, bucket__lte=now)
    found = {row["bucket"]: _sums(row) for row in rollups.values("bucket").annotate(**_ROLLUP_SUMS).order_by()}
    buckets = [(since + step * n, found.get(since + step * n, UsageSums())) for n in range(count)]
    biggest = ("-cost", "-requests")
    organizations = (
        rollups.values("organization_id", "organization__name")
        .annotate(**_ROLLUP_SUMS)
        .order_by(*biggest, "organization_id")[:top]
    )
    models = rollups.values("public_model").annotate(**_ROLLUP_SUMS).order_by(*biggest, "public_model")[:top]
    outstanding = BillingAccount.objects.aggregate(total=Sum("balance"))["total"]
    return PlatformUsage(
        window=window,
        period=period,
        since=since,
        buckets=buckets,
        top_organizations=[
            UsageLeader(row["organization_id"], row["organization__name"], _sums(row)) for row in organizations
        ],
        top_models=[UsageLeader(row["public_model"], row["public_model"], _sums(row)) for row in models],
        credits_outstanding=money.internal(outstanding or money.ZERO),
    )
