"""Budget reads: the budget book the gateway enforces, what a budget's window has
spent, and an organization's budgets and alerts.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import CharField, Q, QuerySet, Sum
from django.db.models.functions import Cast
from django.utils import timezone

from billing.budgets import budget_window, parse_thresholds
from billing.models import (
    CREDITS_MAX,
    Budget,
    BudgetAlert,
    UsageEvent,
)
from billing.selectors.broken_rows import _decimal, _log_broken
from oneflow.lib import money
from oneflow.lib.errors import NotFound


@dataclass(frozen=True, slots=True)
class BudgetView:
    """One enabled budget, as the gateway keeps it in process."""

    id: int
    organization_id: int
    api_key_id: int | None  # None: the whole organization
    period: str  # one of billing.budgets.PERIODS
    limit: Decimal  # credits per window
    time_zone: str  # the organization's: windows reset at its midnight
    thresholds: tuple[int, ...]  # alert percentages, ascending

    def window(self, moment: datetime) -> tuple[datetime, datetime]:
        """The [start, end) of the window containing ``moment``, in UTC."""
        return budget_window(self.period, time_zone=self.time_zone, moment=moment)


@dataclass(frozen=True)
class BudgetBook:
    """Every enabled budget, by organization and by key, for admitting requests without a query."""

    organizations: dict[int, tuple[BudgetView, ...]]  # budgets of whole organizations
    keys: dict[int, tuple[BudgetView, ...]]  # budgets of single keys
    # Budgets stored in a form they cannot be enforced in, and why, by organization
    # (or by key): requests they cover are refused, everyone else is served.
    broken_organizations: Mapping[int, str] = field(default_factory=dict)
    broken_keys: Mapping[int, str] = field(default_factory=dict)

    def problem(self, organization_id: int, api_key_id: int | None) -> str | None:
        """Why a budget this request spends from cannot be enforced; None when all can."""
        found = self.broken_organizations.get(organization_id)
        return found or (self.broken_keys.get(api_key_id) if api_key_id is not None else None)

    def for_request(self, organization_id: int, api_key_id: int | None) -> tuple[BudgetView, ...]:
        """The budgets a request spends from: its organization's, then its key's."""
        found = self.organizations.get(organization_id, ())
        if api_key_id is not None:
            found += tuple(b for b in self.keys.get(api_key_id, ()) if b.organization_id == organization_id)
        return found


def budget_book() -> BudgetBook:
    """Loads the enabled budgets with their organizations' time zones, in one query.

    The limit is read as text: a budget whose stored limit, period, time zone or
    thresholds cannot be enforced is set aside (its organization's or key's
    requests are refused, with the reason) instead of failing the whole book.
    """
    rows = (
        Budget.objects.filter(enabled=True)
        .order_by("pk")
        .values_list(
            "pk",
            "organization_id",
            "api_key_id",
            "period",
            Cast("limit", output_field=CharField()),
            "organization__time_zone",
            "alert_thresholds",
        )
    )
    organizations: dict[int, list[BudgetView]] = {}
    keys: dict[int, list[BudgetView]] = {}
    broken_organizations: dict[int, str] = {}
    broken_keys: dict[int, str] = {}
    for row in rows:
        pk, organization_id, api_key_id = row[:3]
        view, reason = _budget_view(row)
        if view is None:
            scope = f"budget {pk} of " + ("the organization" if api_key_id is None else "the API key")
            broken = broken_organizations if api_key_id is None else broken_keys
            broken[organization_id if api_key_id is None else api_key_id] = f"{scope}: {reason}"
        elif api_key_id is None:
            organizations.setdefault(organization_id, []).append(view)
        else:
            keys.setdefault(api_key_id, []).append(view)
    _log_broken("budget", {**broken_organizations, **broken_keys})
    return BudgetBook(
        organizations={org: tuple(views) for org, views in organizations.items()},
        keys={key: tuple(views) for key, views in keys.items()},
        broken_organizations=broken_organizations,
        broken_keys=broken_keys,
    )


def _budget_view(row: tuple[Any, ...]) -> tuple[BudgetView | None, str]:
    """A budget row (budget_book's columns) as the gateway enforces it, or why it cannot be."""
    pk, organization_id, api_key_id, period, limit, time_zone, thresholds = row
    amount = _decimal(limit)
    if amount is None or not 0 < amount <= CREDITS_MAX:
        return None, f"its limit is not a number of credits between 0 and {CREDITS_MAX}"
    try:
        view = BudgetView(pk, organization_id, api_key_id, period, amount, time_zone, parse_thresholds(thresholds))
        view.window(timezone.now())  # an unknown period or time zone fails here, not in a request
    except (ValueError, KeyError, zoneinfo.ZoneInfoNotFoundError) as error:
        return None, f"it cannot be applied ({error})"
    return view, ""


def budget_spent(*, budget: BudgetView | Budget, start: datetime, end: datetime) -> Decimal:
    """Credits charged in [start, end) to the budget's organization, or to its key alone.

    Counts drained usage events, so it trails the gateway by the drain's delay.
    """
    events = UsageEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    if budget.api_key_id is not None:
        events = events.filter(api_key_id=budget.api_key_id)  # index billing_usage_key_recent
    else:
        events = events.filter(organization_id=budget.organization_id)  # index billing_usage_org_recent
    return money.internal(events.aggregate(total=Sum("charged"))["total"] or money.ZERO)


def budgets_spent(*, budgets: Sequence[Budget], now: datetime) -> dict[int, Decimal]:
    """budget_spent() of each budget's window containing ``now``, by budget id.

    One query per organization for its whole-organization budgets and one for all
    the key budgets, however many budgets: each reads its events once, over the
    widest window it needs, and sums each budget's window with a filtered SUM
    (where one query per budget would read a day's events inside the week's
    inside the month's).
    """
    windows = {budget.pk: budget.window(now) for budget in budgets}
    spent: dict[int, Decimal] = {}
    whole: dict[int, list[Budget]] = {}
    for budget in budgets:
        if budget.api_key_id is None:
            whole.setdefault(budget.organization_id, []).append(budget)
    for organization_id, group in whole.items():
        events = UsageEvent.objects.filter(organization_id=organization_id)  # index billing_usage_org_recent
        spent |= _window_sums(events, group, windows, per_key=False)
    if per_key := [budget for budget in budgets if budget.api_key_id is not None]:
        events = UsageEvent.objects.filter(api_key_id__in={b.api_key_id for b in per_key})  # billing_usage_key_recent
        spent |= _window_sums(events, per_key, windows, per_key=True)
    return spent


def _window_sums(
    events: QuerySet[UsageEvent],
    budgets: list[Budget],
    windows: dict[int, tuple[datetime, datetime]],
    *,
    per_key: bool,
) -> dict[int, Decimal]:
    first = min(windows[budget.pk][0] for budget in budgets)
    last = max(windows[budget.pk][1] for budget in budgets)
    sums = {}
    for budget in budgets:
        start, end = windows[budget.pk]
        scope = Q(api_key_id=budget.api_key_id) if per_key else Q()
        sums[f"b{budget.pk}"] = Sum("charged", filter=scope & Q(created_at__gte=start, created_at__lt=end))
    totals = events.filter(created_at__gte=first, created_at__lt=last).aggregate(**sums)
    return {budget.pk: money.internal(totals[f"b{budget.pk}"] or money.ZERO) for budget in budgets}


def budgets_of(*, organization_id: int) -> QuerySet[Budget]:
    return (
        Budget.objects.filter(organization_id=organization_id)
        .select_related("organization", "api_key")
        .order_by("api_key_id", "period", "pk")
    )


def budget_get(*, organization_id: int, budget_id: int) -> Budget:
    budget = budgets_of(organization_id=organization_id).filter(pk=budget_id).first()
    if budget is None:
        raise NotFound("No such budget.", code="budget_not_found")
    return budget


def budget_alerts_of(*, organization_id: int) -> QuerySet[BudgetAlert]:
    return (
        BudgetAlert.objects.filter(budget__organization_id=organization_id)
        .select_related("budget__api_key")
        .order_by("-created_at", "-pk")
    )
