"""Database work from async code, off the event loop; reading rows one bad row cannot spoil."""

from __future__ import annotations

from collections.abc import Callable
from decimal import InvalidOperation
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import DataError, close_old_connections, connection
from django.db.models import Model, QuerySet

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


M = TypeVar("M", bound=Model)

# What a database driver raises for a stored value its column's Python type cannot
# hold (SQLite keeps any number in a DECIMAL column; Django's converter then fails).
UNREADABLE = (InvalidOperation, ValueError, TypeError, OverflowError, DataError)


def readable_rows(queryset: QuerySet[M]) -> tuple[list[M], list[Any]]:
    """The rows of ``queryset`` that load, and the primary keys of those that do not.

    One query when every row loads; otherwise the rows are loaded one by one, so
    one bad row (written before today's bounds, or by hand) costs its own owner
    alone, never everyone who shares the query with it.
    """
    try:
        return list(queryset), []
    except UNREADABLE:
        pass
    rows, unreadable = [], []
    for pk in queryset.values_list("pk", flat=True):
        try:
            rows.append(queryset.get(pk=pk))
        except UNREADABLE:
            unreadable.append(pk)
    return rows, unreadable
