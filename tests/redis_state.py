"""Redis state for tests: run a script synchronously, and start each test without
the keys another test left behind (deployment and organization ids come round again)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

from oneflow.lib import redis, scripts
from oneflow.lib.scripts import Invocation

R = TypeVar("R")


def run(invocation: Invocation[R]) -> R:
    """One script through the synchronous client, as jobs and the admin run it."""
    return scripts.run(redis.sync_client(), invocation)


def both_ways(invocations: Sequence[Invocation[Any]], *, between: Callable[[], None]) -> tuple[list[Any], list[Any]]:
    """The replies of ``invocations`` run one by one through the synchronous client,
    then (after ``between`` resets the keys) through an asyncio one: the same
    definitions serve jobs and the gateway, so the two lists must match."""
    synced = [run(invocation) for invocation in invocations]
    between()

    async def through_asyncio() -> list[Any]:
        client = redis.async_client()
        try:
            return [await scripts.arun(client, invocation) for invocation in invocations]
        finally:
            await client.aclose()

    return synced, asyncio.run(through_asyncio())


def forget(pattern: str) -> None:
    client = redis.sync_client()
    for key in client.scan_iter(pattern):
        client.delete(key)


def fresh(pattern: str) -> Callable[..., Any]:
    """An autouse fixture that forgets the keys matching ``pattern`` before and after each test."""

    @pytest.fixture(autouse=True)
    def forgetting() -> Iterator[None]:
        forget(pattern)
        yield
        forget(pattern)

    return forgetting
