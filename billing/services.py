"""Writes for billing."""

from __future__ import annotations

import logging
import os
import socket
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from smtplib import SMTPException
from typing import Any

import redis as redis_lib
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from accounts.models import ApiKey, Membership, Organization, User
from billing import price_imports, selectors, usage
from billing.budgets import format_thresholds
from billing.holds import Holds, to_units
from billing.models import BillingAccount, Budget, BudgetAlert, LedgerEntry, Price, UsageEvent, UsageRollup
from oneflow.lib import config_version, money, redis
from oneflow.lib.db import readable_rows
from oneflow.lib.errors import Conflict, InvalidInput, ServiceError

logger = logging.getLogger(__name__)

BATCH = 1000
# An event a consumer read but did not acknowledge for this long is taken over.
CLAIM_IDLE_MS = 60_000


def _ensure_group(client: redis_lib.Redis) -> None:
    try:
        client.xgroup_create(usage.STREAM, usage.GROUP, id="0", mkstream=True)
    except redis_lib.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _price(row: UsageEvent, book: selectors.PriceBook) -> None:
    """Prices an event at the version in force when its request arrived."""
    row.price, row.cost = book.cost(
        public_model=row.public_model,
        organization_id=row.organization_id,
        moment=row.created_at,
        prompt=row.prompt_tokens,
        cached=row.cached_tokens,
        completion=row.completion_tokens,
    )


def _row(event: dict[str, Any]) -> tuple[UsageEvent, Decimal]:
    fields = dict(event)
    fields["created_at"] = datetime.fromtimestamp(fields.pop("created_at"), UTC)
    fields["provider_cost_usd"] = Decimal(fields.get("provider_cost_usd") or 0)
    charged = Decimal(fields.pop("charged", None) or 0)
    return UsageEvent(**fields, charged=charged), charged


def _post_charges(charges: list[tuple[UsageEvent, Decimal]]) -> None:
    """One charge entry per request, idempotent on its request id, per organization in one go.

    The hold made sure each charge fits; if the free balance in Redis was lost
    and rebuilt meanwhile, a charge may not fit any more: it is cut to what is
    left (the balance never goes below zero) and logged for an operator.
    """
    keys = {f"usage:{row.request_id}" for row, _ in charges}
    posted = set(LedgerEntry.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True))
    by_org: dict[int, list[tuple[UsageEvent, Decimal]]] = {}
    for row, amount in charges:
        key = f"usage:{row.request_id}"
        if amount > 0 and key not in posted:
            posted.add(key)  # an event sent twice may sit twice in one batch
            by_org.setdefault(row.organization_id, []).append((row, amount))
    for organization_id, items in by_org.items():
        BillingAccount.objects.get_or_create(organization_id=organization_id)
        account = BillingAccount.objects.select_for_update().get(organization_id=organization_id)
        entries = []
        for row, amount in items:
            taken = min(amount, account.balance)
            if taken < amount:
                logger.error("charge cut to the balance", extra={"request_id": row.request_id, "owed": str(amount)})
            if taken > 0:
                account.balance = money.internal(account.balance - taken)
                entries.append(
                    LedgerEntry(
                        account=account,
                        kind=LedgerEntry.Kind.CHARGE,
                        amount=-taken,
                        idempotency_key=f"usage:{row.request_id}",
                        request_id=row.request_id,
                        price=row.price,
                    )
                )
        LedgerEntry.objects.bulk_create(entries)
        account.save(update_fields=["balance", "updated_at"])


def _store(entries: list[tuple[Any, dict[Any, Any]]]) -> set[int]:
    """Stores a batch with its charges in one transaction; returns the organizations charged."""
    charges = [_row(usage.decode(fields)) for _, fields in entries]
    rows = [row for row, _ in charges]
    book = selectors.price_book(models={row.public_model for row in rows})
    for row in rows:
        if row.usage_source != UsageEvent.Source.VOID:
            _price(row, book)
    with transaction.atomic(durable=True):
        # A redelivered event (its first batch committed, the ack was lost)
        # hits the unique request_id and is skipped.
        UsageEvent.objects.bulk_create(rows, ignore_conflicts=True, batch_size=BATCH)
        _post_charges(charges)
        _touch_keys(rows)
    return {row.organization_id for row, charged in charges if charged > 0}


def _touch_keys(rows: list[UsageEvent]) -> None:
    """Keys' last use, from the batch: the gateway itself never writes to the database."""
    last_used: dict[int, datetime] = {}
    for row in rows:
        if row.api_key_id is not None:
            last_used[row.api_key_id] = max(row.created_at, last_used.get(row.api_key_id, row.created_at))
    for key_id, moment in last_used.items():
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment)
        ApiKey.objects.filter(stale, pk=key_id).update(last_used_at=moment)


DRAIN_LOCK_SECONDS = 120  # longer than one batch may take


def usage_drain(*, max_batches: int = 50, claim_idle_ms: int = CLAIM_IDLE_MS) -> int:
    """Moves pending usage events from Redis into PostgreSQL; returns how many were read.

    Safe to run concurrently and repeatedly: each batch is stored and
    acknowledged under the drain's lock (a counter seeded from PostgreSQL plus
    what is still in Redis must never see a batch that is in both), and rows
    are unique on the request id. The lock is taken per batch, so a seeding
    request waits for one batch at most.
    """
    client = redis.sync_client()
    _ensure_group(client)
    holds = Holds(client)
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    total = 0
    organizations: set[int] = set()
    for number in range(max_batches):
        with client.lock(usage.DRAIN_LOCK, timeout=DRAIN_LOCK_SECONDS, blocking_timeout=DRAIN_LOCK_SECONDS):
            entries = _next_batch(client, consumer, claim_idle_ms=claim_idle_ms if number == 0 else None)
            if entries is None:
                break
            if entries:
                organizations |= _store(entries)
                holds.ack(group=usage.GROUP, ids=[entry_id for entry_id, _ in entries])
                total += len(entries)
    if total:
        logger.info("usage drained", extra={"events": total})
    if organizations:
        budget_alerts_check(organization_ids=organizations)
    return total


def _next_batch(client: Any, consumer: str, *, claim_idle_ms: int | None) -> list[Any] | None:
    """Events to store: first those a dead drain left unacknowledged for
    ``claim_idle_ms`` (on the first batch only), then new ones; None when there are none."""
    if claim_idle_ms is not None:
        claimed: Any = client.xautoclaim(usage.STREAM, usage.GROUP, consumer, claim_idle_ms, "0-0", count=BATCH)
        if claimed and claimed[1]:
            return [entry for entry in claimed[1] if entry[1]]
    reply: Any = client.xreadgroup(usage.GROUP, consumer, {usage.STREAM: ">"}, count=BATCH)
    if not reply:
        return None
    return [entry for entry in reply[0][1] if entry[1]]


# --- Credits -------------------------------------------------------------------------


class InsufficientCredits(ServiceError):
    status_code = 402
    default_code = "insufficient_quota"


def billing_account(*, organization: Organization) -> BillingAccount:
    account, _ = BillingAccount.objects.get_or_create(organization=organization)
    return account


def ledger_post(
    *,
    organization: Organization,
    kind: str,
    amount: Decimal,
    idempotency_key: str,
    note: str = "",
    created_by: User | None = None,
    request_id: str = "",
) -> LedgerEntry:
    """Appends one balance change and moves the balance with it, atomically.

    The account row is locked for the change, so concurrent postings queue and
    the balance always equals the sum of the entries. A posting that would take
    the balance below zero is refused (and the database constraint would
    refuse it too). Posting the same idempotency key again returns the first
    entry; with a different amount it is a conflict.
    """
    amount = money.internal(amount)
    with transaction.atomic(durable=True):
        account = BillingAccount.objects.select_for_update().get(pk=billing_account(organization=organization).pk)
        existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.amount != amount or existing.account_id != account.pk:
                raise Conflict("This idempotency key was used for another posting.", code="idempotency_conflict")
            return existing
        if account.balance + amount < 0:
            raise InsufficientCredits(
                f"The balance ({money.display_text(account.balance)}) cannot cover {money.display_text(-amount)}."
            )
        entry = LedgerEntry.objects.create(
            account=account,
            kind=kind,
            amount=amount,
            idempotency_key=idempotency_key,
            note=note,
            created_by=created_by,
            request_id=request_id,
        )
        account.balance = money.internal(account.balance + amount)
        account.save(update_fields=["balance", "updated_at"])
        # Redis learns the new balance by seeding it again from the ledger.
        organization_id = organization.pk
        transaction.on_commit(lambda: Holds(redis.sync_client()).forget(organization_id=organization_id))
    return entry


def credits_grant(
    *, organization: Organization, amount: Decimal, idempotency_key: str, note: str = "", created_by: User | None = None
) -> LedgerEntry:
    if amount <= 0:
        raise ServiceError("A grant must be a positive amount.", param="amount")
    return ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.GRANT,
        amount=amount,
        idempotency_key=idempotency_key,
        note=note,
        created_by=created_by,
    )


def ledger_reconcile(*, organization: Organization) -> tuple[Decimal, Decimal]:
    """(balance, sum of entries) of an organization; they must be equal."""
    account = billing_account(organization=organization)
    return account.balance, selectors.ledger_sum(account=account)


# --- Rollups ---------------------------------------------------------------------------

ROLLUP_LOOKBACK = timedelta(hours=2)  # events drained late still land in their hour
_SUMS = {
    "requests": Count("id"),
    "errors": Count("id", filter=Q(status_code__gte=400)),
    "prompt_tokens": Sum("prompt_tokens"),
    "cached_tokens": Sum("cached_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "cost": Sum("cost"),
    "provider_cost_usd": Sum("provider_cost_usd"),
}
_GROUP = ("organization_id", "api_key_id", "public_model", "provider", "bucket")


def _upsert(period: str, rows: Any) -> int:
    count = 0
    for row in rows:
        keys = {name: row[name] for name in _GROUP}
        UsageRollup.objects.update_or_create(period=period, **keys, defaults={name: row[name] or 0 for name in _SUMS})
        count += 1
    return count


def usage_rollup(*, now: datetime | None = None) -> int:
    """Recomputes the hour buckets of the last two hours from events, and the
    days they fall in from the hours; returns how many rows were written.

    Each bucket is recomputed whole, so running it again changes nothing.
    """
    now = now or timezone.now()
    first_hour = (now - ROLLUP_LOOKBACK).replace(minute=0, second=0, microsecond=0)
    first_day = first_hour.replace(hour=0)
    hours = (
        UsageEvent.objects.filter(created_at__gte=first_hour)
        .annotate(bucket=TruncHour("created_at", tzinfo=UTC))
        .values(*_GROUP)
        .annotate(**_SUMS)
    )
    with transaction.atomic(durable=True):
        written = _upsert(UsageRollup.Period.HOUR, hours)
        days = (
            UsageRollup.objects.filter(period=UsageRollup.Period.HOUR, bucket__gte=first_day)
            .annotate(day=TruncDay("bucket", tzinfo=UTC))
            .values("organization_id", "api_key_id", "public_model", "provider", "day")
            .annotate(**{name: Sum(name) for name in _SUMS})
        )
        written += _upsert(UsageRollup.Period.DAY, ({**row, "bucket": row["day"]} for row in days))
    return written


# --- Housekeeping ------------------------------------------------------------------------

RETENTION_BATCH = 10_000


def usage_retention_apply(*, now: datetime | None = None) -> int:
    """Deletes raw usage events past the retention window; returns how many.

    The rollups keep the totals. Deleting in batches keeps each transaction
    short on a large table.
    """
    cutoff = (now or timezone.now()) - settings.USAGE_RETENTION
    deleted = 0
    while True:
        batch = list(UsageEvent.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:RETENTION_BATCH])
        if not batch:
            break
        with transaction.atomic(durable=True):
            deleted += UsageEvent.objects.filter(pk__in=batch).delete()[0]
    if deleted:
        logger.info("usage retention applied", extra={"deleted": deleted})
    return deleted


def credits_reconcile(*, now: float | None = None) -> dict[int, int]:
    """Gives back the holds of requests that died, and sets each organization's
    free credits in Redis to the ledger's figure; returns the corrections made
    (units, positive when Redis had too little).

    Redis takes whole units per charge where the ledger takes exact amounts,
    so small positive corrections are expected; anything else is logged.
    """
    client = redis.sync_client()
    holds = Holds(client)
    organizations = {
        int(key.split(b":")[2])
        for pattern in ("oneflow:credits:*:free", "oneflow:credits:*:holds")
        for key in client.scan_iter(match=pattern, count=1000)
    }
    corrections = {}
    for organization_id in sorted(organizations):
        holds.expire(organization_id=organization_id, now=now)
        if holds.free_units(organization_id=organization_id) is None:
            continue
        # Under the drain's lock, no batch is both in the ledger and pending in Redis.
        with client.lock(usage.DRAIN_LOCK, timeout=DRAIN_LOCK_SECONDS, blocking_timeout=DRAIN_LOCK_SECONDS):
            balance = selectors.credits_balance(organization_id=organization_id)
            before, after = holds.seed(
                organization_id=organization_id, ledger_units=to_units(balance, round_up=False), force=True
            )
        if before is not None and before != after:
            corrections[organization_id] = after - before
            logger.info(
                "free credits reconciled with the ledger",
                extra={"organization_id": organization_id, "units": after - before},
            )
    return corrections


def ledger_reconcile_all() -> list[int]:
    """Organizations whose balance is not the sum of their ledger; each is logged as an error.

    Nothing is fixed automatically: a mismatch means a bug or a hand edit, and
    an operator must look at it.
    """
    sums = dict(
        LedgerEntry.objects.values("account_id").annotate(total=Sum("amount")).values_list("account_id", "total")
    )
    mismatched = []
    for account in BillingAccount.objects.only("pk", "organization_id", "balance").iterator():
        total = money.internal(sums.get(account.pk) or money.ZERO)
        if total != account.balance:
            mismatched.append(account.organization_id)
            logger.error(
                "ledger and balance disagree",
                extra={
                    "organization_id": account.organization_id,
                    "balance": str(account.balance),
                    "ledger": str(total),
                },
            )
    return mismatched


# --- Budgets ----------------------------------------------------------------------------


BUDGET_UPDATABLE = frozenset({"limit", "alert_thresholds", "enabled"})


def budget_config_changed() -> None:
    """Call after any change of budgets (the admin does): gateways reload their budget book."""
    config_version.bump()


def _thresholds(values: Iterable[int]) -> str:
    try:
        return format_thresholds(values)
    except ValueError as exc:
        raise InvalidInput(f"Alert thresholds: {exc}.", param="alert_thresholds") from None


def _budget_validate(budget: Budget) -> None:
    """Model validation (limit, thresholds, the key's organization, one budget per
    scope and period) as a ServiceError the APIs render."""
    try:
        budget.full_clean()
    except ValidationError as exc:
        if any(error.code == "budget_exists" for error in exc.error_dict.get(NON_FIELD_ERRORS, [])):
            raise Conflict(" ".join(exc.message_dict[NON_FIELD_ERRORS]), code="budget_exists") from None
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(" ".join(messages), param=None if field == NON_FIELD_ERRORS else field) from None


def budget_create(
    *,
    organization: Organization,
    period: str,
    limit: Decimal,
    api_key: ApiKey | None = None,
    alert_thresholds: Iterable[int] = (50, 80, 100),
    enabled: bool = True,
) -> Budget:
    """Creates the budget of an organization (``api_key`` None) or of one of its keys.

    One budget per scope and period: another is a 409 ``budget_exists``, also
    when two requests race (the database constraint decides).
    """
    budget = Budget(
        organization=organization,
        api_key=api_key,
        period=period,
        limit=money.internal(limit),
        alert_thresholds=_thresholds(alert_thresholds),
        enabled=enabled,
    )
    _budget_validate(budget)
    try:
        with transaction.atomic(durable=True):
            budget.save()
            budget_config_changed()
    except IntegrityError:
        raise Conflict("A budget for this scope and period already exists.", code="budget_exists") from None
    logger.info("budget created", extra={"budget_id": budget.pk, "org_id": organization.pk})
    return budget


def budget_update(*, budget: Budget, **fields: Any) -> Budget:
    """Changes a budget's limit, alert thresholds or enabled flag.

    Scope and period are what a budget is: to change them, create another.
    """
    unknown = sorted(set(fields) - BUDGET_UPDATABLE)
    if unknown:
        raise InvalidInput(f"A budget's {', '.join(unknown)} cannot change; create another budget.", param=unknown[0])
    if "alert_thresholds" in fields:
        fields["alert_thresholds"] = _thresholds(fields["alert_thresholds"])
    if fields.get("limit") is not None:
        fields["limit"] = money.internal(fields["limit"])
    with transaction.atomic(durable=True):
        # Locked, so two partial updates at once both land.
        budget = Budget.objects.select_for_update().get(pk=budget.pk)
        for name, value in fields.items():
            setattr(budget, name, value)
        _budget_validate(budget)
        budget.save()
        budget_config_changed()
    logger.info("budget updated", extra={"budget_id": budget.pk, "fields": sorted(fields)})
    return budget


def budget_delete(*, budget: Budget) -> None:
    """Deletes a budget and its alerts; gateways stop enforcing it at once."""
    with transaction.atomic(durable=True):
        Budget.objects.filter(pk=budget.pk).delete()
        budget_config_changed()
    logger.info("budget deleted", extra={"budget_id": budget.pk, "org_id": budget.organization_id})


def _owner_emails(organization_id: int) -> list[str]:
    owners = Membership.objects.filter(
        organization_id=organization_id, role=Membership.Role.OWNER, user__is_active=True
    ).order_by("user__email")
    return list(owners.values_list("user__email", flat=True))


def _budget_alerts_record(*, budget: Budget, window_start: datetime, spent: Decimal) -> list[BudgetAlert]:
    """The alerts of the thresholds ``spent`` reaches that were not recorded yet in this window."""
    reached = [threshold for threshold in budget.thresholds if spent * 100 >= budget.limit * threshold]
    created = []
    with transaction.atomic(durable=True):
        for threshold in reached:
            # The unique (budget, window_start, threshold) decides between racing
            # checks: the loser's insert fails and it finds the winner's row.
            alert, is_new = BudgetAlert.objects.get_or_create(
                budget=budget,
                window_start=window_start,
                threshold=threshold,
                defaults={"spent": spent, "limit": budget.limit},
            )
            if is_new:
                created.append(alert)
    return created


def _budget_alert_email(*, budget: Budget, alert: BudgetAlert, window_end: datetime, recipients: list[str]) -> None:
    organization = budget.organization
    scope = organization.name if budget.api_key is None else f'{organization.name} (key "{budget.api_key.name}")'
    # A line break in a name must not reach the header (send_mail would refuse it).
    subject = " ".join(f"OneFlow: {scope} reached {alert.threshold}% of its {budget.period} budget".split())
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    lines = [
        f"{scope} has spent {money.display_text(alert.spent)} of its {budget.period} budget of "
        f"{money.display_text(alert.limit)} credits ({alert.threshold}% alert).",
        "",
        f"The budget window started {alert.window_start.astimezone(zone):%Y-%m-%d %H:%M} and resets "
        f"{window_end.astimezone(zone):%Y-%m-%d %H:%M} ({organization.time_zone}).",
    ]
    if alert.threshold >= 100:
        lines.append("Requests that would go over the budget are refused until then.")
    try:
        send_mail(subject, "\n".join(lines) + "\n", None, recipients)
    except (SMTPException, OSError):
        # The alert stays recorded (at most one email per threshold and window);
        # the other budgets still get theirs.
        logger.exception("budget alert email failed", extra={"budget_alert_id": alert.pk})


def budget_alerts_check(*, organization_ids: Iterable[int], now: datetime | None = None) -> list[BudgetAlert]:
    """Records each alert threshold that the enabled budgets of these organizations
    reached in their current window, and emails the organizations' owners; returns
    the alerts recorded by this call.

    A threshold alerts once per window, however often or concurrently this runs
    (a unique constraint decides). When one check finds several new thresholds of a
    budget, they are all recorded and one email names the highest. Spending is
    read from drained usage events, so alerts trail the gateway by the drain's
    delay. Emails go out after the alerts are committed, never inside a transaction.
    """
    now = now or timezone.now()
    budgets, unreadable = readable_rows(
        Budget.objects.filter(organization_id__in=list(organization_ids), enabled=True)
        .select_related("organization", "api_key")
        .order_by("pk")
    )
    for budget_id in unreadable:
        logger.warning("budget row cannot be read; no alerts for it", extra={"budget_id": budget_id})
    created: list[BudgetAlert] = []
    owners: dict[int, list[str]] = {}
    for budget in budgets:
        try:
            created += _budget_alerts_of(budget, now=now, owners=owners)
        except Exception:
            # One budget that cannot be checked must not stop the others' alerts.
            logger.exception("budget alerts could not be checked", extra={"budget_id": budget.pk})
    return created


def _budget_alerts_of(budget: Budget, *, now: datetime, owners: dict[int, list[str]]) -> list[BudgetAlert]:
    start, end = budget.window(now)
    spent = selectors.budget_spent(budget=budget, start=start, end=end)
    alerts = _budget_alerts_record(budget=budget, window_start=start, spent=spent)
    if not alerts:
        return []
    for alert in alerts:
        logger.info(
            "budget alert",
            extra={
                "budget_id": budget.pk,
                "org_id": budget.organization_id,
                "api_key_id": budget.api_key_id,
                "period": budget.period,
                "threshold": alert.threshold,
                "window_start": start.isoformat(),
                "spent": str(spent),
                "limit": str(budget.limit),
            },
        )
    if budget.organization_id not in owners:
        owners[budget.organization_id] = _owner_emails(budget.organization_id)
    recipients = owners[budget.organization_id]
    if recipients:
        _budget_alert_email(budget=budget, alert=alerts[-1], window_end=end, recipients=recipients)
    return alerts


# --- Refunds and price imports ---------------------------------------------------------


def refund_issue(
    *,
    organization: Organization,
    request_id: str,
    amount: Decimal | None = None,
    refunds_seen: int | None = None,
    note: str = "",
    created_by: User | None = None,
) -> LedgerEntry:
    """Gives back all or part of what one request was charged, as a REFUND entry posted by ledger_post.

    The refunds of a request never add up to more than its charge; ``amount``
    None refunds what is left. The refunds of a request form a chain: the n-th
    has the idempotency key ``refund:<request_id>:<n>``, and ``refunds_seen``
    is how many the caller saw when it decided (a form sends the number it
    showed; None: as now). So a double submit returns the first entry instead
    of refunding twice, and of two refunds decided on the same state only one
    posts: the other meets the same key in ledger_post (a Conflict, or the
    first entry back if the amounts agree). Refunding a request never charged
    to ``organization``, or a zero or negative amount, is a ServiceError.
    """
    if not request_id:
        raise ServiceError("A refund names the request it refunds.", param="request_id")
    if amount is not None and amount <= 0:
        raise ServiceError("A refund must be a positive amount.", param="amount")
    if len(note) > 300:
        raise ServiceError("The note is longer than 300 characters.", param="note")
    state = selectors.refundable(organization_id=organization.pk, request_id=request_id)
    if state.charged <= 0:
        raise ServiceError(
            f"Request {request_id} was never charged to {organization}.", code="not_charged", param="request_id"
        )
    seen = state.refunds if refunds_seen is None else refunds_seen
    key = f"refund:{request_id}:{seen + 1}"
    issued = LedgerEntry.objects.filter(idempotency_key=key, account__organization=organization).first()
    if issued is not None and (amount is None or money.internal(amount) == issued.amount):
        return issued
    if seen != state.refunds:
        raise Conflict(
            f"Request {request_id} was refunded meanwhile; look at its refunds again.",
            code="refunds_changed",
            param="refunds_seen",
        )
    remaining = state.remaining
    if remaining <= 0:
        raise Conflict(f"Request {request_id} is already fully refunded.", code="already_refunded", param="request_id")
    amount = remaining if amount is None else money.internal(amount)
    if amount > remaining:
        raise Conflict(
            f"At most {remaining.normalize():f} credits of request {request_id} can still be refunded.",
            code="refund_exceeds_charge",
            param="amount",
        )
    return ledger_post(
        organization=organization,
        kind=LedgerEntry.Kind.REFUND,
        amount=amount,
        idempotency_key=key,
        note=note or f"refund of request {request_id}",
        created_by=created_by,
        request_id=request_id,
    )


def prices_changed() -> None:
    """Call after any change of price versions: gateways reload their prices on their next request."""
    config_version.bump()


def prices_import(*, rows: list[dict[str, Any]], created_by: User | None = None) -> list[Price]:
    """Creates one price version per row, all or none, and has gateways reload prices.

    Rows are the columns of Price as strings (see billing.price_imports). They
    are checked against the versions stored when the transaction starts, and
    every problem is reported at once, each with its row number, as one
    PriceRowsInvalid. Two imports racing for the same version meet at the
    database's unique constraint; the later one is a Conflict and creates nothing.
    """
    author = f"imported by {created_by}" if created_by is not None else "imported"
    try:
        with transaction.atomic(durable=True):
            existing = price_imports.existing_versions(models=price_imports.row_models(rows))
            checked = price_imports.price_rows_check(rows=rows, now=timezone.now(), existing=existing)
            prices = [row.price() for row in checked]
            for price in prices:
                price.note = price.note or author
            created = Price.objects.bulk_create(prices)
            prices_changed()
    except IntegrityError as exc:
        raise Conflict(
            "A version in this file was created meanwhile; nothing was imported.",
            code="price_version_exists",
            param="rows",
        ) from exc
    logger.info("prices imported", extra={"versions": len(created), "by": getattr(created_by, "pk", None)})
    return created
