"""One worker's gateway: everything the hot path keeps between requests.

Built when the ASGI app starts (lifespan startup), closed when it stops, and
passed to each request (``Request.gateway``). Nothing on the hot path keeps
state in module globals: a test builds a gateway of its own, and the Django
side (the admin's "Test connection", probes) never touches a worker's clients.

The Prometheus collectors (gateway/metrics.py) are the one exception, by
Prometheus's design: a registry belongs to the process (to the worker's file in
multiprocess mode), not to an event loop, and holds no connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio

from billing.journal import UsageJournal
from gateway.breakers import BreakerPolicy
from gateway.snapshots import Snapshots
from oneflow.lib import redis as redis_seam
from oneflow.lib.http import HttpClient

logger = logging.getLogger(__name__)

# At shutdown, background writes (credential flags) get this long to finish.
CLOSE_GRACE_SECONDS = 5.0


@dataclass(eq=False)
class Gateway:
    http: HttpClient
    redis: redis.asyncio.Redis
    journal: UsageJournal
    snapshots: Snapshots
    breaker_policy: BreakerPolicy
    # Work started off the request path; held here because the event loop keeps
    # only weak references to its tasks.
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def open(cls) -> Gateway:
        """A gateway for the running event loop (its clients connect on first use)."""
        client = redis_seam.async_client()
        return cls(
            http=HttpClient(),
            redis=client,
            journal=UsageJournal(client),
            snapshots=Snapshots(client),
            breaker_policy=BreakerPolicy.from_settings(),
        )

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        """Sends what the usage journal still holds, lets background work finish,
        then closes the clients (ending any stream still being read)."""
        await self.journal.close()
        if self.tasks:
            _, late = await asyncio.wait(set(self.tasks), timeout=CLOSE_GRACE_SECONDS)
            for task in late:
                task.cancel()
        await self.http.close()
        await self.redis.aclose()
