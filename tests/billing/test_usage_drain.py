"""The usage drain: Redis stream to PostgreSQL, exactly once per request id."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from accounts.models import Organization
from billing import holds, usage
from billing.holds import Event
from billing.models import Price, UsageEvent
from billing.services import billing_account, usage_drain
from oneflow.lib import redis, redis_keys, scripts
from tests.factories import usage_record

CLAIM_MS = 300  # production waits 60 s before taking a silent consumer's events


def record(organization: Organization, request_id: str) -> usage.UsageRecord:
    return usage_record(organization.pk, request_id=request_id, cached_tokens=2)


def append(*records: usage.UsageRecord) -> None:
    """Records events as the gateway does for requests that held nothing."""
    for item in records:
        event = Event(usage.encode(item), item.organization_id, item.api_key_id, item.created_at)
        scripts.run(
            redis.sync_client(),
            holds.settle(organization_id=item.organization_id, hold_id="", charged_units=0, event=event),
        )


@pytest.fixture(autouse=True)
def _empty_stream() -> None:
    redis.sync_client().delete(redis_keys.USAGE_STREAM, redis_keys.USAGE_PENDING)


def test_each_event_is_stored_once_even_if_delivered_twice(acme: Organization) -> None:
    first = record(acme, "req_a")
    append(first, record(acme, "req_b"), replace(first, completion_tokens=999))

    assert usage_drain() == 3
    assert usage_drain() == 0
    rows = {e.request_id: e for e in UsageEvent.objects.all()}
    assert set(rows) == {"req_a", "req_b"}
    assert rows["req_a"].completion_tokens == 30, "the first delivery wins"
    assert (rows["req_a"].prompt_tokens, rows["req_a"].cached_tokens) == (12, 2)
    assert redis.sync_client().xlen(redis_keys.USAGE_STREAM) == 0


def test_events_a_dead_consumer_read_but_never_stored_are_taken_over(acme: Organization) -> None:
    append(record(acme, "req_lost"))
    client = redis.sync_client()
    client.xgroup_create(redis_keys.USAGE_STREAM, usage.GROUP, id="0", mkstream=True)
    # A worker reads the event and dies before storing it.
    client.xreadgroup(usage.GROUP, "dead-worker", {redis_keys.USAGE_STREAM: ">"}, count=10)

    assert usage_drain(claim_idle_ms=CLAIM_MS) == 0, "not yet: the dead worker might still be busy"
    assert not UsageEvent.objects.exists()

    time.sleep(CLAIM_MS / 1000 + 0.05)
    assert usage_drain(claim_idle_ms=CLAIM_MS) == 1
    assert UsageEvent.objects.get().request_id == "req_lost"


def test_events_are_priced_at_the_version_in_force_when_they_arrived(acme: Organization) -> None:
    change = datetime(2027, 1, 1, tzinfo=UTC)
    Price.objects.create(
        public_model="gpt-4o-mini",
        effective_from=change,
        input_per_1m=Decimal(1),
        cached_input_per_1m=Decimal("0.5"),
        output_per_1m=Decimal(2),
    )
    account = billing_account(organization=acme)
    account.markup = Decimal("1.5")
    account.save()
    million = replace(record(acme, "req"), prompt_tokens=1_000_000, cached_tokens=0, completion_tokens=1_000_000)
    before = replace(million, request_id="req_before", created_at=(change - timedelta(seconds=1)).timestamp())
    after = replace(million, request_id="req_after", created_at=change.timestamp())
    append(before, after)

    usage_drain()

    rows = {e.request_id: e for e in UsageEvent.objects.select_related("price")}
    per_usd = settings.CREDITS_PER_USD
    # Seeded list price of gpt-4o-mini: 0.15 in, 0.60 out per 1M; markup 1.5.
    assert rows["req_before"].cost == (Decimal("0.15") + Decimal("0.60")) * Decimal("1.5") * per_usd
    assert rows["req_after"].cost == (Decimal(1) + Decimal(2)) * Decimal("1.5") * per_usd
    assert rows["req_after"].price is not None
    assert rows["req_after"].price.effective_from == change


def test_an_unpriced_model_costs_nothing_and_keeps_no_price(acme: Organization) -> None:
    append(replace(record(acme, "req_x"), public_model="my-own-model"))
    usage_drain()
    event = UsageEvent.objects.get()
    assert (event.cost, event.price_id) == (Decimal(0), None)


# --- Token classes ------------------------------------------------------------------------


def test_every_token_class_is_stored_and_priced_at_its_rate(acme: Organization) -> None:
    """The drain prices cache reads, both cache writes and output apart, exactly; reasoning
    is stored apart and billed as the output it is part of."""
    Price.objects.create(
        public_model="claude-like",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        input_per_1m=Decimal(3),
        cached_input_per_1m=Decimal("0.30"),
        output_per_1m=Decimal(15),
        cache_write_5m_per_1m=Decimal("3.75"),
        cache_write_1h_per_1m=Decimal(6),
    )
    append(
        replace(
            record(acme, "req_classes"),
            public_model="claude-like",
            prompt_tokens=1_000_000,
            cached_tokens=400_000,
            cache_write_5m_tokens=200_000,
            cache_write_1h_tokens=100_000,
            completion_tokens=50_000,
            reasoning_tokens=20_000,
        )
    )

    usage_drain()

    event = UsageEvent.objects.get()
    assert (event.cached_tokens, event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (
        400_000,
        200_000,
        100_000,
    )
    assert (event.completion_tokens, event.reasoning_tokens) == (50_000, 20_000)
    # 300k uncached at 3, 400k reads at 0.30, 200k at 3.75, 100k at 6, 50k out at 15 (reasoning included)
    usd = Decimal("0.9") + Decimal("0.12") + Decimal("0.75") + Decimal("0.6") + Decimal("0.75")
    assert event.cost == usd * settings.CREDITS_PER_USD


def test_an_event_from_a_gateway_that_knew_no_cache_writes_still_stores(acme: Organization) -> None:
    """A rolling deploy: the drain reads events an older gateway appended, without the new counts."""
    fields = json.loads(usage.encode(record(acme, "req_old")))
    for name in ("cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens"):
        del fields[name]
    event = Event(json.dumps(fields).encode(), acme.pk, None, time.time())
    scripts.run(redis.sync_client(), holds.settle(organization_id=acme.pk, hold_id="", charged_units=0, event=event))

    usage_drain()

    stored = UsageEvent.objects.get()
    assert (stored.prompt_tokens, stored.cached_tokens, stored.completion_tokens) == (12, 2, 30)
    assert (stored.cache_write_5m_tokens, stored.cache_write_1h_tokens, stored.reasoning_tokens) == (0, 0, 0)
