"""The one outbound HTTP client: a pooled aiohttp session per event loop.

aiohttp measured about half the CPU per request of httpx on the gateway bench
(DESIGN.md). A session belongs to the loop that created it, so each worker's
loop gets its own, kept for the life of the loop.
"""

from __future__ import annotations

import asyncio
import weakref

import aiohttp

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()

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


async def close() -> None:
    current = _sessions.pop(asyncio.get_running_loop(), None)
    if current is not None:
        await current.close()


def timeout(*, connect: float, read: float, total: float | None = None) -> aiohttp.ClientTimeout:
    """connect: to open the socket; read: the longest silence between bytes."""
    return aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=read)
