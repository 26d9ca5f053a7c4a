"""The web process's usage journal: what Redis loses or never got is sent again,
and what the drain stored is let go."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal

import pytest
import redis.asyncio

from accounts.models import Organization
from billing import holds, usage
from billing.holds import Event
from billing.journal import UsageJournal
from billing.models import LedgerEntry, UsageEvent
from billing.services import credits_grant, credits_reconcile, usage_drain
from oneflow.lib import redis as oneflow_redis
from oneflow.lib import redis_keys, scripts
from tests.billing.test_usage_drain import record as usage_record
from tests.conftest import free_port

pytestmark = pytest.mark.usefixtures("transactional_db")


def event(organization: Organization, request_id: str) -> Event:
    charged = replace(usage_record(organization, request_id), charged="0.000002")
    return Event(usage.encode(charged), organization.pk, None, charged.created_at)


def run(scenario: Callable[[redis.asyncio.Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        client = oneflow_redis.async_client()
        try:
            await scenario(client)
        finally:
            await client.aclose()

    asyncio.run(main())


async def record(journal: UsageJournal, organization: Organization, request_id: str) -> None:
    await journal.record(
        organization_id=organization.pk,
        hold_id=request_id,
        charged_units=2,
        budget_keys=(),
        event=event(organization, request_id),
    )


@pytest.fixture(autouse=True)
def _empty_stream() -> None:
    oneflow_redis.sync_client().delete(redis_keys.USAGE_STREAM, redis_keys.USAGE_PENDING)


def test_events_are_let_go_once_the_drain_stored_them(acme: Organization) -> None:
    async def scenario(client: redis.asyncio.Redis) -> None:
        journal = UsageJournal(client, background=False)
        await record(journal, acme, "req_1")
        await journal.tick()
        assert len(journal.kept) == 1, "not stored yet"
        await asyncio.to_thread(usage_drain)
        await journal.tick()
        assert not journal.kept

    run(scenario)
    assert UsageEvent.objects.get().request_id == "req_1"


def test_events_a_wiped_redis_lost_are_sent_again_and_stored_once(acme: Organization) -> None:
    credits_grant(organization=acme, amount=Decimal(1), idempotency_key="grant")

    async def scenario(client: redis.asyncio.Redis) -> None:
        journal = UsageJournal(client, background=False)
        await record(journal, acme, "req_1")
        await journal.tick()  # leaves its mark in Redis
        await asyncio.to_thread(usage_drain)  # req_1 is stored ...
        await record(journal, acme, "req_2")  # ... req_2 only in Redis
        await client.flushdb()
        await journal.tick()
        assert await client.xlen(redis_keys.USAGE_STREAM) == 2, "both sent again: the wipe hid what was stored"
        await asyncio.to_thread(usage_drain)
        await journal.tick()
        assert not journal.kept

    run(scenario)
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == ["req_1", "req_2"]
    charges = LedgerEntry.objects.filter(kind="charge").order_by("request_id")
    assert [(c.request_id, c.amount) for c in charges] == [
        ("req_1", Decimal("-0.000002")),
        ("req_2", Decimal("-0.000002")),
    ]


def test_events_recorded_while_redis_is_down_wait_and_are_sent(acme: Organization) -> None:
    async def scenario(client: redis.asyncio.Redis) -> None:
        down = redis.asyncio.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
        journal = UsageJournal(down, background=False)
        await record(journal, acme, "req_1")  # does not raise: the answer was already served
        assert [kept.stream_id for kept in journal.kept] == [None]
        journal.client = client  # Redis is back
        await journal.tick()
        assert await client.xlen(redis_keys.USAGE_STREAM) == 1
        await down.aclose()

    run(scenario)
    usage_drain()
    assert UsageEvent.objects.get().request_id == "req_1"


def test_reconciling_expires_dead_holds_and_resets_free_credits_to_the_ledger(acme: Organization) -> None:
    credits_grant(organization=acme, amount=Decimal(1), idempotency_key="grant")
    client = oneflow_redis.sync_client()
    scripts.run(client, holds.seed(organization_id=acme.pk, ledger_units=1_000_000))
    scripts.run(client, holds.hold(organization_id=acme.pk, hold_id="dead", units=300, now=time.time() - 3600))
    scripts.run(client, holds.hold(organization_id=acme.pk, hold_id="alive", units=100))
    client.decrby(redis_keys.credits_free(acme.pk), 5)  # drift, as whole-unit charges leave

    assert credits_reconcile() == {acme.pk: 5}, "the dead hold came back before, the drift now"
    assert holds.free_units(client, organization_id=acme.pk) == 1_000_000 - 100
    assert credits_reconcile() == {}, "nothing left to correct"
