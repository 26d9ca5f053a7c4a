"""The one seam to Redis.

With ``REDIS_URL`` set, clients talk to that server. Without it OneFlow runs
embedded: every client (sync, asyncio, Django's cache) shares one in-process
fakeredis server with Lua support, so the same scripts and commands run in both
shapes and no code path forks on which one is in use.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from functools import cache
from typing import Any

import fakeredis
import redis
import redis.asyncio
import redis.exceptions
from django.conf import settings

EMBEDDED_URL = "redis://embedded/0"


@cache
def _embedded_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def is_embedded() -> bool:
    return not settings.REDIS_URL


@cache
def sync_client() -> redis.Redis:
    if is_embedded():
        return fakeredis.FakeRedis(server=_embedded_server())
    return redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)


def async_client() -> redis.asyncio.Redis:
    """A client for the running event loop.

    asyncio connections belong to the loop that opened them, so callers keep
    the client for the life of their loop rather than sharing one globally.
    """
    if is_embedded():
        return fakeredis.FakeAsyncRedis(server=_embedded_server())
    return redis.asyncio.Redis.from_url(settings.REDIS_URL, health_check_interval=30)


_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = weakref.WeakKeyDictionary()


def loop_client() -> redis.asyncio.Redis:
    """The asyncio client of the running loop, created on first use and kept."""
    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None:
        client = _loop_clients[loop] = async_client()
    return client


async def close_loop_client() -> None:
    client = _loop_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


ScriptCall = tuple[Any, Sequence[Any], Sequence[Any]]  # (registered script, keys, args)


async def run_scripts(client: redis.asyncio.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Runs several Lua scripts in one round trip (each atomic on its own) and
    returns their replies in order; raises the first error among them.

    redis-py's pipelines check ``SCRIPT EXISTS`` before every execute, a
    second round trip; this sends EVALSHA alone, and only when the server does
    not know a script (a restart, a flush of its scripts) loads it and runs
    that one again (the others already ran: they must not run twice).
    """
    replies = await _evalsha_all(client, calls)
    for index, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.NoScriptError):
            script, keys, args = calls[index]
            script.sha = await client.script_load(script.script)
            replies[index] = await client.evalsha(script.sha, len(keys), *keys, *args)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _evalsha_all(client: redis.asyncio.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


class EmbeddedConnectionPool(redis.ConnectionPool):
    """Lets Django's ``RedisCache`` use the in-process server."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> EmbeddedConnectionPool:
        return cls(connection_class=fakeredis.FakeRedisConnection, server=_embedded_server(), **kwargs)
