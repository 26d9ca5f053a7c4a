"""The one outbound HTTP client: a pooled aiohttp session per event loop.

aiohttp measured about half the CPU per request of httpx on the gateway bench
(DESIGN.md). A session belongs to the loop that created it, so each worker's
loop gets its own, kept for the life of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()
# Answers being read on each loop: closing a session does not wake their readers
# (aiohttp 3.14 leaves them waiting for bytes that never come), closing them does.
_reading: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[aiohttp.ClientResponse]] = (
    weakref.WeakKeyDictionary()
)

# Per-host connection cap: enough for a busy worker, bounded so a slow
# provider cannot eat every socket.
LIMIT_PER_HOST = 256


def session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    current = _sessions.get(loop)
    if current is None or current.closed:
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=LIMIT_PER_HOST, ttl_dns_cache=300, keepalive_timeout=60
        )
        current = aiohttp.ClientSession(
            connector=connector,
            # Bodies are passed through as bytes; aiohttp must not guess charsets or re-encode.
            auto_decompress=True,
            raise_for_status=False,
            skip_auto_headers=("User-Agent",),
        )
        _sessions[loop] = current
    return current


@contextlib.asynccontextmanager
async def post(
    url: str, *, data: bytes, headers: Mapping[str, str], timeouts: aiohttp.ClientTimeout
) -> AsyncIterator[aiohttp.ClientResponse]:
    """POSTs through the loop's session; the answer is closed (its reader woken
    with a ClientConnectionError) if the session closes while it is read."""
    async with session().post(url, data=data, headers=headers, timeout=timeouts) as response:
        reading = _reading.setdefault(asyncio.get_running_loop(), set())
        reading.add(response)
        try:
            yield response
        finally:
            reading.discard(response)


async def close() -> None:
    loop = asyncio.get_running_loop()
    for response in _reading.pop(loop, set()):
        response.close()
    current = _sessions.pop(loop, None)
    if current is not None:
        await current.close()


def timeout(*, connect: float, read: float, total: float | None = None) -> aiohttp.ClientTimeout:
    """connect: to open the socket; read: the longest silence between bytes."""
    return aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=read)


def run_apart(work: Coroutine[Any, Any, T]) -> T:
    """Runs ``work`` from synchronous code (an admin action, a job) on an event loop
    of its own, whose HTTP session is closed when it ends.

    Never ``async_to_sync`` for outbound calls: under uvicorn it runs the
    coroutine on the worker's own loop, and closing that loop's session cut
    every stream the worker was serving (issue 12).
    """

    async def closing() -> T:
        try:
            return await work
        finally:
            await close()

    return asyncio.run(closing())
