"""The one seam to Redis.

With ``REDIS_URL`` set, clients talk to that server. Without it OneFlow runs
embedded: every client (sync, asyncio, Django's cache) shares one in-process
fakeredis server with Lua support, so the same scripts and commands run in both
shapes and no code path forks on which one is in use.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
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
    """Runs several Lua scripts as one (a single EVALSHA: one round trip, all
    atomic together) and returns their replies in order.

    Measured cheaper than a pipeline of EVALSHAs, which costs redis-py a
    pipeline object, per-command packing and parsing on every request. The
    composite of each combination of scripts is built once and loaded when
    the server does not know it (it ran nothing then, so running it again is
    safe).
    """
    sources = tuple(dict.fromkeys(script.script for script, _, _ in calls))
    composite = _composite(sources)
    keys: list[Any] = []
    header: list[Any] = [len(calls)]
    values: list[Any] = []
    for script, call_keys, call_args in calls:
        header += [sources.index(script.script) + 1, len(call_keys), len(call_args)]
        keys += call_keys
        values += call_args
    try:
        replies = await client.evalsha(composite.sha, len(keys), *keys, *header, *values)
    except redis.exceptions.NoScriptError:
        await client.script_load(composite.source)
        replies = await client.evalsha(composite.sha, len(keys), *keys, *header, *values)
    return list(replies)


@dataclass(frozen=True)
class _Composite:
    source: str
    sha: str


@cache
def _composite(sources: tuple[str, ...]) -> _Composite:
    """One script calling each source as a function of its own KEYS and ARGV.

    ARGV: the number of calls; per call, its function (1-based), key count and
    argument count; then every call's arguments in order (KEYS likewise).
    """
    functions = "\n".join(f"local function f{i}(KEYS, ARGV)\n{source}\nend" for i, source in enumerate(sources, 1))
    listed = ", ".join(f"f{i}" for i in range(1, len(sources) + 1))
    source = (
        functions
        + f"\nlocal fns = {{{listed}}}\n"
        + """
local calls = tonumber(ARGV[1])
local out, k, a = {}, 0, 1 + 3 * calls
for c = 1, calls do
  local fn, nk, na = tonumber(ARGV[3 * c - 1]), tonumber(ARGV[3 * c]), tonumber(ARGV[3 * c + 1])
  local keys, args = {}, {}
  for i = 1, nk do keys[i] = KEYS[k + i] end
  for i = 1, na do args[i] = ARGV[a + i] end
  k, a = k + nk, a + na
  local reply = fns[fn](keys, args)
  if reply == nil then reply = false end
  out[c] = reply
end
return out
"""
    )
    return _Composite(source, hashlib.sha1(source.encode()).hexdigest())  # noqa: S324 - Redis names scripts by SHA-1


class EmbeddedConnectionPool(redis.ConnectionPool):
    """Lets Django's ``RedisCache`` use the in-process server."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> EmbeddedConnectionPool:
        return cls(connection_class=fakeredis.FakeRedisConnection, server=_embedded_server(), **kwargs)
