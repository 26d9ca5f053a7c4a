"""Usage reads of one organization: summaries and the dashboard overview from the
rollups, and the request log read page by page from the raw events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from accounts.models import ApiKey
from billing.models import (
    UsageEvent,
    UsageRollup,
)
from oneflow.lib import money
from oneflow.lib.errors import NotFound

USAGE_GROUPS = {"day": "bucket", "model": "public_model", "key": "api_key__public_id", "provider": "provider"}
# The days a usage read accepts from a person: far enough inside the calendar that
# the windows built around them (a default start a month back, an exclusive end a
# day on, a chart a year wide) are still dates.
USAGE_FIRST_DAY = date(1970, 1, 1)
USAGE_LAST_DAY = date(9998, 12, 31)


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
            cache_write_5m_tokens=Sum("cache_write_5m_tokens"),
            cache_write_1h_tokens=Sum("cache_write_1h_tokens"),
            completion_tokens=Sum("completion_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"),
            cost=Sum("cost"),
        )
        .order_by(field)
    )
    return [{"group": row.pop(field), **row} for row in rows]


# --- Dashboard overview ----------------------------------------------------------------


@dataclass(frozen=True)
class UsageDay:
    day: date
    requests: int
    errors: int
    cost: Decimal  # credits


@dataclass(frozen=True)
class UsageOverview:
    """An organization's daily usage in a window, from the daily rollups."""

    days: list[UsageDay]  # every day of the window, oldest first, zeros where nothing ran
    top_models: list[dict[str, Any]]  # public_model, requests, cost; the costliest first

    @property
    def requests(self) -> int:
        return sum(day.requests for day in self.days)

    @property
    def errors(self) -> int:
        return sum(day.errors for day in self.days)

    @property
    def cost(self) -> Decimal:
        return sum((day.cost for day in self.days), money.ZERO)

    @property
    def error_rate(self) -> float | None:
        """Errors per request (0..1); None without requests."""
        return self.errors / self.requests if self.requests else None


def usage_overview(*, organization_id: int, days: int, today: date, top: int = 5) -> UsageOverview:
    """The ``days`` UTC days up to and including ``today``: two grouped queries over the
    rollup range index, never the raw usage events."""
    start = datetime.combine(today - timedelta(days=days - 1), time.min, tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    rollups = UsageRollup.objects.filter(
        organization_id=organization_id, period=UsageRollup.Period.DAY, bucket__gte=start, bucket__lt=end
    )
    per_day: dict[date, dict[str, Any]] = {
        row["bucket"].date(): dict(row)
        for row in rollups.values("bucket").annotate(r=Sum("requests"), e=Sum("errors"), c=Sum("cost")).order_by()
    }
    series = []
    for offset in range(days):
        day = start.date() + timedelta(days=offset)
        row = per_day.get(day, {})
        series.append(UsageDay(day, row.get("r") or 0, row.get("e") or 0, money.internal(row.get("c") or money.ZERO)))
    models = (
        rollups.values("public_model")
        .annotate(requests=Sum("requests"), cost=Sum("cost"))
        .order_by("-cost", "-requests", "public_model")[:top]
    )
    return UsageOverview(days=series, top_models=[dict(row) for row in models])


# --- Dashboard usage and request log ------------------------------------------------------


def usage_key_names(*, organization_id: int, public_ids: set[str]) -> dict[str, str]:
    """Names of the keys a usage table shows, in one query bounded by the table's rows."""
    from_keys = ApiKey.objects.filter(organization_id=organization_id, public_id__in=public_ids)
    return dict(from_keys.values_list("public_id", "name"))


STATUS_CLASSES = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600)}


@dataclass(frozen=True)
class RequestCursor:
    """Where a page of the request log ends: the last row's (created_at, id)."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.id}"

    @classmethod
    def decode(cls, text: str) -> RequestCursor | None:
        """None for anything that is not a cursor this class wrote."""
        micros, _, pk = text.partition(".")
        if not (micros.lstrip("-").isdigit() and pk.isdigit()):
            return None
        try:
            return cls(_EPOCH + timedelta(microseconds=int(micros)), int(pk))
        except OverflowError:
            return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RequestPage:
    events: list[UsageEvent]
    next: RequestCursor | None  # None on the last page


def usage_events_page(
    *,
    organization_id: int,
    after: RequestCursor | None,
    limit: int,
    since: datetime | None = None,
    api_key: str | None = None,
    public_model: str | None = None,
    status_class: str | None = None,
) -> RequestPage:
    """One page of an organization's requests, newest first, continuing after ``after``.

    Keyset pagination on (created_at, id): each page is one index range read of
    ``billing_usage_org_recent`` (or ``billing_usage_key_recent`` for one key), never an
    OFFSET or a COUNT. Filters the index cannot serve (model, status) must come with
    ``since``, which bounds how much of the index a sparse filter may scan.
    """
    events = UsageEvent.objects.filter(organization_id=organization_id)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if api_key:
        events = events.filter(api_key__public_id=api_key)
    if public_model:
        events = events.filter(public_model=public_model)
    if status_class:
        low, high = STATUS_CLASSES[status_class]
        events = events.filter(status_code__gte=low, status_code__lt=high)
    if after is not None:
        # The plain bound makes the index read start at the cursor; the OR only breaks ties.
        events = events.filter(created_at__lte=after.created_at).filter(
            Q(created_at__lt=after.created_at) | Q(created_at=after.created_at, pk__lt=after.id)
        )
    rows = list(events.select_related("api_key").order_by("-created_at", "-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return RequestPage(events=rows, next=RequestCursor(rows[-1].created_at, rows[-1].pk) if more else None)


def usage_event_get(*, organization_id: int, request_id: str) -> UsageEvent:
    """One request of the organization, or NotFound (also for another organization's)."""
    event = (
        UsageEvent.objects.filter(organization_id=organization_id, request_id=request_id)
        .select_related("api_key")
        .first()
    )
    if event is None:
        raise NotFound("No such request.", code="request_not_found")
    return event
