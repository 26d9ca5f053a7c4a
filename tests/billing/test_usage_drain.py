"""The usage drain: Redis stream to PostgreSQL, exactly once per request id."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from accounts.models import Organization
from billing import usage
from billing.models import UsageEvent
from billing.services import usage_drain
from oneflow.lib import redis

CLAIM_MS = 300  # production waits 60 s before taking a silent consumer's events


def record(organization: Organization, request_id: str) -> usage.UsageRecord:
    return usage.UsageRecord(
        request_id=request_id,
        organization_id=organization.pk,
        api_key_id=None,
        endpoint="chat",
        public_model="gpt-4o-mini",
        deployment_id=None,
        provider="Simulator",
        stream=False,
        status_code=200,
        error_type="",
        prompt_tokens=12,
        cached_tokens=2,
        completion_tokens=30,
        usage_source="reported",
        latency_ms=15,
        ttft_ms=None,
        attempts=1,
        client_disconnected=False,
        created_at=time.time(),
    )


def append(*records: usage.UsageRecord) -> None:
    async def run() -> None:
        client = redis.async_client()
        for item in records:
            await usage.usage_append(client, item)
        await client.aclose()

    asyncio.run(run())


@pytest.fixture(autouse=True)
def _empty_stream() -> None:
    redis.sync_client().delete(usage.STREAM)


def test_each_event_is_stored_once_even_if_delivered_twice(acme: Organization) -> None:
    first = record(acme, "req_a")
    append(first, record(acme, "req_b"), replace(first, completion_tokens=999))

    assert usage_drain() == 3
    assert usage_drain() == 0
    rows = {e.request_id: e for e in UsageEvent.objects.all()}
    assert set(rows) == {"req_a", "req_b"}
    assert rows["req_a"].completion_tokens == 30, "the first delivery wins"
    assert (rows["req_a"].prompt_tokens, rows["req_a"].cached_tokens) == (12, 2)
    assert redis.sync_client().xlen(usage.STREAM) == 0


def test_events_a_dead_consumer_read_but_never_stored_are_taken_over(acme: Organization) -> None:
    append(record(acme, "req_lost"))
    client = redis.sync_client()
    client.xgroup_create(usage.STREAM, usage.GROUP, id="0", mkstream=True)
    # A worker reads the event and dies before storing it.
    client.xreadgroup(usage.GROUP, "dead-worker", {usage.STREAM: ">"}, count=10)

    assert usage_drain(claim_idle_ms=CLAIM_MS) == 0, "not yet: the dead worker might still be busy"
    assert not UsageEvent.objects.exists()

    time.sleep(CLAIM_MS / 1000 + 0.05)
    assert usage_drain(claim_idle_ms=CLAIM_MS) == 1
    assert UsageEvent.objects.get().request_id == "req_lost"
