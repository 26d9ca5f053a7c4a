"""The one seam to Redis.

With ``REDIS_URL`` set, clients talk to that server. Without it OneFlow runs
embedded: every client (sync, asyncio, Django's cache) shares one in-process
fakeredis server with Lua support, so the same scripts and commands run in both
shapes and no code path forks on which one is in use.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import fakeredis
import redis
import redis.asyncio
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
    """A new asyncio client. Its connections belong to the loop that opens them,
    so its owner (the gateway, for a worker's life) keeps it and closes it."""
    if is_embedded():
        return fakeredis.FakeAsyncRedis(server=_embedded_server())
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        timeout=settings.REDIS_POOL_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
    return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


class EmbeddedConnectionPool(redis.ConnectionPool):
    """Lets Django's ``RedisCache`` use the in-process server."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> EmbeddedConnectionPool:
        return cls(connection_class=fakeredis.FakeRedisConnection, server=_embedded_server(), **kwargs)
