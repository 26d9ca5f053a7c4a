"""Reads for billing."""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db.models import CharField, Q, QuerySet, Sum
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.models import ApiKey
from billing.budgets import budget_window, parse_thresholds
from billing.models import (
    CREDITS_MAX,
    MARKUP_MAX,
    BillingAccount,
    Budget,
    BudgetAlert,
    LedgerEntry,
    Price,
    UsageEvent,
    UsageRollup,
)
from billing.pricing import Terms, Tokens, cost_credits
from oneflow.lib import money
from oneflow.lib.db import readable_rows
from oneflow.lib.errors import NotFound

logger = logging.getLogger(__name__)


def price_at(*, public_model: str, moment: datetime) -> Price | None:
    """The price version of a model in force at ``moment``: the newest one not after it."""
    return (
        Price.objects.filter(public_model=public_model, effective_from__lte=moment).order_by("-effective_from").first()
    )


def ledger_sum(*, account: BillingAccount) -> Decimal:
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return money.internal(total or money.ZERO)


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
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by(field)
    )
    return [{"group": row.pop(field), **row} for row in rows]


def ledger_of(*, organization_id: int) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(account__organization_id=organization_id).order_by("-created_at", "-pk")


@dataclass(frozen=True)
class PriceBook:
    """Every price version by model, for pricing without a query per request."""

    versions: dict[str, tuple[Price, ...]]  # oldest first
    markups: dict[int, Decimal]  # organizations whose markup is not 1
    # Stored rows that cannot be used (unreadable, or out of bounds), and why:
    # they degrade their own model or organization, never the whole book.
    broken_models: Mapping[str, str] = field(default_factory=dict)
    broken_organizations: Mapping[int, str] = field(default_factory=dict)

    def at(self, public_model: str, moment: datetime) -> Price | None:
        found = None
        for version in self.versions.get(public_model, ()):
            if version.effective_from > moment:
                break
            found = version
        return found

    def markup(self, organization_id: int) -> Decimal:
        return self.markups.get(organization_id, Decimal(1))

    def cost(
        self, *, public_model: str, organization_id: int, moment: datetime, prompt: int, cached: int, completion: int
    ) -> tuple[Price | None, Decimal]:
        """The price version in force at ``moment`` and what the usage costs in credits under it."""
        price = self.at(public_model, moment)
        if price is None or price.is_free:
            return price, money.ZERO
        tokens = Tokens(prompt=prompt, cached=min(cached, prompt), completion=completion)
        terms = Terms(price.input_per_1m, price.cached_input_per_1m, price.output_per_1m, price.request_fee)
        markup = self.markup(organization_id)
        return price, cost_credits(terms, tokens, markup=markup, credits_per_usd=settings.CREDITS_PER_USD)


def price_book(*, models: set[str] | None = None) -> PriceBook:
    prices = Price.objects.order_by("public_model", "effective_from")
    if models is not None:
        prices = prices.filter(public_model__in=models)
    readable, unreadable = readable_rows(prices)
    versions: dict[str, list[Price]] = {}
    for price in readable:
        versions.setdefault(price.public_model, []).append(price)
    broken_models = dict.fromkeys(
        Price.objects.filter(pk__in=unreadable).values_list("public_model", flat=True),
        "a stored price version of this model cannot be read",
    )
    markups, broken_organizations = _markups()
    _log_broken("price", {**broken_models, **broken_organizations})
    return PriceBook(
        versions={model: tuple(rows) for model, rows in versions.items()},
        markups=markups,
        broken_models=broken_models,
        broken_organizations=broken_organizations,
    )


def _markups() -> tuple[dict[int, Decimal], dict[int, str]]:
    """Markups other than 1, read as text: one the column cannot hold breaks its organization only."""
    rows = BillingAccount.objects.exclude(markup=Decimal(1)).values_list(
        "organization_id", Cast("markup", output_field=CharField())
    )
    markups, broken = {}, {}
    for organization_id, text in rows:
        markup = _decimal(text)
        if markup is None or not 0 <= markup <= MARKUP_MAX:
            broken[organization_id] = "the organization's price markup is not a number between 0 and 100"
        else:
            markups[organization_id] = markup
    return markups, broken


def _decimal(text: Any) -> Decimal | None:
    try:
        value = Decimal(str(text))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _log_broken(kind: str, broken: Mapping[Any, str]) -> None:
    for owner, reason in broken.items():
        logger.warning(
            "unusable %s row: its owner is refused until it is fixed", kind, extra={"owner": owner, "reason": reason}
        )


def credits_balance(*, organization_id: int) -> Decimal:
    balance = BillingAccount.objects.filter(organization_id=organization_id).values_list("balance", flat=True).first()
    return balance if balance is not None else money.ZERO


# --- Budgets -----------------------------------------------------------------------------


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


# --- Operator overview: the whole platform's usage ----------------------------------------

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
