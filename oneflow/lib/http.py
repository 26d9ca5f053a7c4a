"""The one outbound HTTP client: a pooled aiohttp session, owned by whoever opened it.

aiohttp measured about half the CPU per request of httpx on the gateway bench
(DESIGN.md). The gateway opens one ``HttpClient`` per worker at startup and
passes it to the adapters; Django-side callers open their own (``run_apart``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

# Per-host connection cap: enough for a busy worker, bounded so a slow
# provider cannot eat every socket.
LIMIT_PER_HOST = 256


class HttpClient:
    """A pooled aiohttp session and the answers being read through it.

    A session belongs to the event loop that opened it: whoever owns a client
    (the gateway for a worker's life, ``run_apart`` for one admin action)
    opens and closes it on its own loop.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        # Closing a session does not wake the readers of its answers (aiohttp 3.14
        # leaves them waiting for bytes that never come); closing the answers does.
        self._reading: set[aiohttp.ClientResponse] = set()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=LIMIT_PER_HOST, ttl_dns_cache=300, keepalive_timeout=60
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Bodies are passed through as bytes; aiohttp must not guess charsets or re-encode.
                auto_decompress=True,
                raise_for_status=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    @contextlib.asynccontextmanager
    async def post(
        self, url: str, *, data: bytes, headers: Mapping[str, str], timeouts: aiohttp.ClientTimeout
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POSTs through the session; the answer is closed (its reader woken with a
        ClientConnectionError) if the client closes while it is read."""
        async with self.session().post(url, data=data, headers=headers, timeout=timeouts) as response:
            self._reading.add(response)
            try:
                yield response
            finally:
                self._reading.discard(response)

    async def close(self) -> None:
        for response in list(self._reading):
            response.close()
        self._reading.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


def timeout(*, connect: float, read: float, total: float | None = None) -> aiohttp.ClientTimeout:
    """connect: to open the socket; read: the longest silence between bytes."""
    return aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=read)


def run_apart(work: Callable[[HttpClient], Coroutine[Any, Any, T]]) -> T:
    """Runs ``work(client)`` from synchronous code (an admin action, a job) on an
    event loop and HTTP client of its own, closed when it ends.

    Never ``async_to_sync`` for outbound calls: under uvicorn it runs the
    coroutine on the worker's own loop, and closing a session there once cut
    every stream the worker was serving (issue 12).
    """

    async def closing() -> T:
        client = HttpClient()
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(closing())
