"""The web process's copy of the usage it recorded, kept until PostgreSQL has it.

Settling a request appends its usage event (and its charge) to the Redis
stream; the drain stores it in PostgreSQL a second or two later. Until then
Redis holds the only copy, and a Redis that loses data (FLUSHALL, a restart
without persistence, a failover to a lagging replica) would lose usage that
clients were already served. So each process keeps what it appended, drops it
once the drain's consumer group shows it stored, and appends it again when it
notices the stream lost it. Events that never reached Redis (Redis down) wait
here and are sent when it is back. The drain is idempotent on the request id,
so sending an event twice stores it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions

from billing import holds, usage
from billing.holds import Event
from oneflow.lib import redis_keys, scripts
from oneflow.lib.scripts import Invocation

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
# Beyond this many unstored events the oldest are let go (and logged): a drain
# that far behind is an outage of its own, and memory must stay bounded.
MAX_KEPT = 200_000

StreamId = tuple[int, int]


def _stream_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    millis, _, sequence = text.partition("-")
    return int(millis), int(sequence or 0)


def _text(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


@dataclass(slots=True)
class Kept:
    organization_id: int
    hold_id: str
    charged_units: int
    budget_keys: tuple[str, ...]
    event: Event
    stream_id: StreamId | None = None  # None: not in Redis (yet, or any more)
    sending: bool = False


class UsageJournal:
    def __init__(self, client: redis.asyncio.Redis, *, background: bool = True) -> None:
        self.client = client
        self.background = background  # False: the owner calls tick() itself
        self.kept: deque[Kept] = deque()
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False
        # Set in Redis on every tick: finding it gone means Redis lost data since.
        self._marker = redis_keys.usage_journal_marker(uuid.uuid4().hex)
        self._marked = False

    async def record(
        self,
        *,
        organization_id: int,
        hold_id: str,
        charged_units: int,
        budget_keys: Sequence[str],
        event: Event,
        extra: Sequence[Invocation[Any]] = (),
    ) -> list[Any]:
        """Settles the hold and appends the event, with ``extra`` scripts in the
        same round trip (sent once); returns their replies (none when Redis failed).

        Never raises for Redis trouble: the event is kept and sent later.
        """
        kept = Kept(organization_id, hold_id, charged_units, tuple(budget_keys), event)
        self._keep(kept)
        try:
            return await self._send(kept, extra)
        except redis.exceptions.RedisError:
            logger.warning("usage event kept for later: Redis is unavailable", exc_info=True)
        return []

    def _keep(self, kept: Kept) -> None:
        self.kept.append(kept)
        if len(self.kept) > MAX_KEPT:
            lost = self.kept.popleft()
            logger.error("usage journal full: oldest event no longer kept", extra={"request_id": lost.hold_id})
        if self.background and not self._closing and (self._ticker is None or self._ticker.done()):
            self._ticker = asyncio.get_running_loop().create_task(self._run())

    async def _send(self, kept: Kept, extra: Sequence[Invocation[Any]] = ()) -> list[Any]:
        # A hold that is still open is settled; one that is gone is charged anew.
        kept.sending = True
        try:
            settle = holds.settle(
                organization_id=kept.organization_id,
                hold_id=kept.hold_id,
                charged_units=kept.charged_units,
                event=kept.event,
                budget_keys=kept.budget_keys,
            )
            # A reply of the riders that cannot be read must not lose the settle's.
            riders = [scripts.forgiving(invocation) for invocation in extra]
            settled, *replies = await scripts.arun_all(self.client, [settle, *riders])
        finally:
            kept.sending = False
        kept.charged_units = settled.charged_units
        kept.stream_id = None if settled.stream_id is None else _stream_id(settled.stream_id)
        return replies

    async def _run(self) -> None:
        # Nothing was kept before this run started, so nothing can have been lost before it.
        self._marked = False
        while self.kept and not self._closing:
            try:
                await self.tick()
            except redis.exceptions.RedisError:
                logger.warning("usage journal could not reach Redis; will retry", exc_info=True)
            await asyncio.sleep(TICK_SECONDS)

    async def tick(self) -> None:
        """Forgets what the drain stored, and sends again what Redis does not have."""
        newest = next((k.stream_id for k in reversed(self.kept) if k.stream_id is not None), None)
        state = await self._stream_state(newest)
        if state.lost(newest):
            logger.error("Redis lost usage events; sending them again", extra={"events": len(self.kept)})
            for kept in self.kept:
                kept.stream_id = None
        while self.kept and self.kept[0].stream_id is not None and state.stored(self.kept[0].stream_id):
            self.kept.popleft()
        for kept in list(self.kept):
            if kept.stream_id is None and not kept.sending:
                await self._send(kept)

    async def _stream_state(self, newest: StreamId | None) -> _StreamState:
        """The drain's progress, and signs of lost data, read in one atomic snapshot."""
        bound = _text(newest or (0, 0))
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.exists(self._marker)
            pipe.set(self._marker, 1, ex=3600)
            pipe.xrange(redis_keys.USAGE_STREAM, bound, bound)
            pipe.xinfo_groups(redis_keys.USAGE_STREAM)
            pipe.xpending(redis_keys.USAGE_STREAM, usage.GROUP)
            marked, _, found, groups, pending = await pipe.execute(raise_on_error=False)
        wiped = self._marked and not marked
        self._marked = True
        if isinstance(groups, Exception) or isinstance(pending, Exception):
            return _StreamState(None, None, wiped, bool(found))  # no stream or no group yet: nothing stored
        group = next((g for g in groups if _name(g["name"]) == usage.GROUP), None)
        delivered = _stream_id(group["last-delivered-id"]) if group else None
        oldest_pending = _stream_id(pending["min"]) if pending.get("pending") else None
        return _StreamState(delivered, oldest_pending, wiped, bool(found))

    async def close(self) -> None:
        """Last chance at shutdown for events that never reached Redis."""
        self._closing = True
        if self._ticker is not None:
            # Awaited while the client is still open, as the tick's clean-up needs it.
            # The flag ends the loop even if a client library swallows the cancel.
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        unsent = [kept for kept in self.kept if kept.stream_id is None]
        for kept in unsent:
            try:
                await self._send(kept)
            except redis.exceptions.RedisError:
                logger.error("usage event lost at shutdown: Redis is unavailable", extra={"request_id": kept.hold_id})


def _name(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class _StreamState:
    delivered: StreamId | None  # the consumer group's last delivered id
    oldest_pending: StreamId | None  # the oldest id delivered but not yet acknowledged
    wiped: bool  # this process's marker vanished since the last look
    newest_found: bool  # the newest event this process sent is still in the stream

    def stored(self, stream_id: StreamId) -> bool:
        """Delivered to the drain and acknowledged, so in PostgreSQL."""
        if self.wiped or self.delivered is None or stream_id > self.delivered:
            return False
        return self.oldest_pending is None or stream_id < self.oldest_pending

    def lost(self, newest: StreamId | None) -> bool:
        if newest is None:
            return False
        return self.wiped or (not self.newest_found and not self.stored(newest))
