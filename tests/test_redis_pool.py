"""A busy worker waits for a Redis connection instead of failing the request.

redis-py's asyncio pool raises MaxConnectionsError once 100 connections are in use;
a burst of 200 simultaneous requests on one worker reached that in CI and answered
500. The gateway's client uses a blocking pool: past its size a command waits.
"""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings

from oneflow.lib import redis


async def _hold_connections(count: int) -> list[object]:
    client = redis.async_client()
    try:
        # BLPOP on a key nobody fills holds its connection for its whole timeout.
        return await asyncio.gather(*(client.blpop([f"oneflow:test:pool:{i}"], timeout=0.2) for i in range(count)))
    finally:
        await client.aclose()


@pytest.mark.usefixtures("live_services")
def test_more_commands_than_connections_wait_for_one_instead_of_failing() -> None:
    with override_settings(REDIS_MAX_CONNECTIONS=2, REDIS_POOL_TIMEOUT_SECONDS=5):
        replies = asyncio.run(_hold_connections(6))
    assert replies == [None] * 6, "every command ran, two at a time"
