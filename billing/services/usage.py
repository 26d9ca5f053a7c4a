"""Usage writes: the drain that moves usage events from Redis into PostgreSQL and
charges them, the hourly and daily rollups, and the retention of raw events.
"""

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

from accounts.models import ApiKey
from billing import holds, selectors, usage
from billing.models import BillingAccount, LedgerEntry, UsageEvent, UsageRollup
from billing.services.budgets import budget_alerts_check
from oneflow.lib import money, redis, redis_keys, scripts, tracing
from oneflow.lib.figures import figure_add_on_commit

logger = logging.getLogger(__name__)

BATCH = 1000
# An event a consumer read but did not acknowledge for this long is taken over.
CLAIM_IDLE_MS = 60_000


def _ensure_group(client: redis_lib.Redis) -> None:
    try:
        client.xgroup_create(redis_keys.USAGE_STREAM, usage.GROUP, id="0", mkstream=True)
    except redis_lib.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _price(row: UsageEvent, book: selectors.PriceBook) -> None:
    """Prices an event at the version in force when its request arrived, by the rule
    the gateway priced it with (gateway.settlement.price_call), so the stored cost is
    the cost the client was shown."""
    row.price, row.cost = book.cost(
        public_model=row.public_model,
        organization_id=row.organization_id,
        moment=row.created_at,
        prompt=row.prompt_tokens,
        cached=row.cached_tokens,
        completion=row.completion_tokens,
        cache_write_5m=row.cache_write_5m_tokens,
        cache_write_1h=row.cache_write_1h_tokens,
    )


def _row(event: dict[str, Any]) -> tuple[UsageEvent, Decimal]:
    fields = dict(event)
    fields.pop("traceparent", None)  # for the drain's span, not a column
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
    charged = money.ZERO  # credits posted by this call
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
                charged += taken
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
    figure_add_on_commit("oneflow_credits_charged_total", charged)  # revenue, once this batch commits


def _store(events: list[dict[str, Any]]) -> set[int]:
    """Stores a batch with its charges in one transaction; returns the organizations charged."""
    charges = [_row(event) for event in events]
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
# Links from a batch's span to the requests it stores. The SDK keeps 128 a span
# (OTEL_SPAN_LINK_COUNT_LIMIT) and drops the rest; at 10 % sampling a full batch
# of 1,000 carries about 100, and each link is ~60 bytes of every export.
DRAIN_LINKS_MAX = 128


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
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    total = 0
    organizations: set[int] = set()
    for number in range(max_batches):
        with client.lock(redis_keys.DRAIN_LOCK, timeout=DRAIN_LOCK_SECONDS, blocking_timeout=DRAIN_LOCK_SECONDS):
            entries = _next_batch(client, consumer, claim_idle_ms=claim_idle_ms if number == 0 else None)
            if entries is None:
                break
            if entries:
                events = [usage.decode(fields) for _, fields in entries]
                traced = (event.get("traceparent", "") for event in events)
                with tracing.span("usage_drain batch", links=tracing.links(traced, limit=DRAIN_LINKS_MAX)) as span:
                    if span.is_recording():
                        span.set_attribute("oneflow.usage.events", len(events))
                    organizations |= _store(events)
                    scripts.run(client, holds.ack(group=usage.GROUP, ids=[entry_id for entry_id, _ in entries]))
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
        stream = redis_keys.USAGE_STREAM
        claimed: Any = client.xautoclaim(stream, usage.GROUP, consumer, claim_idle_ms, "0-0", count=BATCH)
        if claimed and claimed[1]:
            return [entry for entry in claimed[1] if entry[1]]
    reply: Any = client.xreadgroup(usage.GROUP, consumer, {redis_keys.USAGE_STREAM: ">"}, count=BATCH)
    if not reply:
        return None
    return [entry for entry in reply[0][1] if entry[1]]


# --- Rollups ---------------------------------------------------------------------------

ROLLUP_LOOKBACK = timedelta(hours=2)  # events drained late still land in their hour
_SUMS = {
    "requests": Count("id"),
    "errors": Count("id", filter=Q(status_code__gte=400)),
    "prompt_tokens": Sum("prompt_tokens"),
    "cached_tokens": Sum("cached_tokens"),
    "cache_write_5m_tokens": Sum("cache_write_5m_tokens"),
    "cache_write_1h_tokens": Sum("cache_write_1h_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "reasoning_tokens": Sum("reasoning_tokens"),
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
