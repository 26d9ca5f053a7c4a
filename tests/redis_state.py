"""Redis state for tests: run a script synchronously, and start each test without
the keys another test left behind (deployment and organization ids come round again)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from oneflow.lib import redis, scripts
from oneflow.lib.scripts import Invocation

R = TypeVar("R")


def run(invocation: Invocation[R]) -> R:
    """One script through the synchronous client, as jobs and the admin run it."""
    return scripts.run(redis.sync_client(), invocation)


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
