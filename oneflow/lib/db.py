"""Database work from async code, off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection

T = TypeVar("T")


def _closing(fn: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        close_old_connections()
        try:
            return fn()
        finally:
            # Executor threads are reused: give the connection back to the
            # pool rather than pinning one per thread.
            connection.close()

    return run


async def in_thread(fn: Callable[[], T]) -> T:
    """Runs a blocking ORM call in a worker thread (not Django's single
    thread-sensitive one: these calls touch no request state)."""
    return await sync_to_async(_closing(fn), thread_sensitive=False)()
