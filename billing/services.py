"""Writes for billing."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis as redis_lib
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from accounts.models import ApiKey, Organization, User
from billing import selectors, usage
from billing.models import BillingAccount, LedgerEntry, UsageEvent, UsageRollup
from oneflow.lib import money, redis
from oneflow.lib.errors import Conflict, ServiceError

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
    return UsageEvent(**fields), charged


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
        if amount > 0 and f"usage:{row.request_id}" not in posted:
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


def _store(entries: list[tuple[Any, dict[Any, Any]]]) -> int:
    charges = [_row(usage.decode(fields)) for _, fields in entries]
    rows = [row for row, _ in charges]
    book = selectors.price_book(models={row.public_model for row in rows})
    for row in rows:
        if row.usage_source != UsageEvent.Source.VOID:
            _price(row, book)
    with transaction.atomic(durable=True):
        # A redelivered event (its first batch committed, the ack was lost)
        # hits the unique request_id and is skipped.
        created = UsageEvent.objects.bulk_create(rows, ignore_conflicts=True, batch_size=BATCH)
        _post_charges(charges)
        _touch_keys(rows)
    return len(created)


def _touch_keys(rows: list[UsageEvent]) -> None:
    """Keys' last use, from the batch: the gateway itself never writes to the database."""
    last_used: dict[int, datetime] = {}
    for row in rows:
        if row.api_key_id is not None:
            last_used[row.api_key_id] = max(row.created_at, last_used.get(row.api_key_id, row.created_at))
    for key_id, moment in last_used.items():
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment)
        ApiKey.objects.filter(stale, pk=key_id).update(last_used_at=moment)


def usage_drain(*, max_batches: int = 50, claim_idle_ms: int = CLAIM_IDLE_MS) -> int:
    """Moves pending usage events from Redis into PostgreSQL; returns how many were read.

    Safe to run concurrently and repeatedly: each consumer gets its own events,
    and rows are unique on the request id.
    """
    client = redis.sync_client()
    _ensure_group(client)
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    total = 0
    claimed: Any = client.xautoclaim(usage.STREAM, usage.GROUP, consumer, claim_idle_ms, "0-0", count=BATCH)
    batches = [claimed[1]] if claimed and claimed[1] else []
    for _ in range(max_batches):
        if not batches:
            reply: Any = client.xreadgroup(usage.GROUP, consumer, {usage.STREAM: ">"}, count=BATCH)
            if not reply:
                break
            batches.append(reply[0][1])
        entries = [entry for entry in batches.pop() if entry[1]]
        if not entries:
            continue
        _store(entries)
        ids = [entry_id for entry_id, _ in entries]
        client.xack(usage.STREAM, usage.GROUP, *ids)
        client.xdel(usage.STREAM, *ids)
        total += len(entries)
    if total:
        logger.info("usage drained", extra={"events": total})
    return total


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
