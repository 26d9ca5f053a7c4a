"""What the gateway knows without asking the database: keys, the model catalog,
prices and budgets, as one consistent view per configuration version.

A ``Config`` is read under one version of oneflow.lib.config_version: the
version first, then the rows, so its data is at least as new as its version.
Every request is judged on the one Config it took at the start; the hold
script reads the version in Redis in the same step as it holds the credits,
and when that version is not the Config's own, the request is judged again on
a newer Config. A Config is never relabelled: a request that read an old one
always finds out, however many requests reload at once (issue 11: marking the
snapshots current before their data was loaded let a concurrent request keep
a hold computed without a just-created budget).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio

from accounts.keys import raw_key_prefix
from accounts.selectors import KeyCredentials, api_key_credentials
from billing.selectors import BudgetBook, PriceBook, budget_book, price_book
from gateway.errors import invalid_key
from oneflow.lib import redis_keys
from oneflow.lib.config_version import Version
from oneflow.lib.db import in_thread
from providers.selectors import Catalog, ModelView, catalog_build, model_grants

logger = logging.getLogger(__name__)

KEY_TTL = 60.0  # seconds a key stays cached even if nothing changes
MISSING_TTL = 30.0  # unknown prefixes, so a stream of bad keys does not hit the DB
CATALOG_TTL = 300.0


@dataclass
class Config:
    """Keys, catalog, grants, prices and budgets as they were under ``version``."""

    version: Version
    catalog: Catalog
    grants: dict[int, frozenset[int]]
    prices: PriceBook
    budgets: BudgetBook
    loaded_at: float = field(default_factory=time.monotonic)
    # Keys are read on first use; each entry is at least as new as ``version``.
    keys: dict[str, tuple[KeyCredentials | None, float]] = field(default_factory=dict)

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.loaded_at >= CATALOG_TTL

    async def authenticate(self, raw: str | None) -> KeyCredentials:
        if not raw:
            raise invalid_key(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
            )
        prefix = raw_key_prefix(raw)
        if prefix is None:
            raise invalid_key()
        now = time.monotonic()
        cached = self.keys.get(prefix)
        if cached is None or cached[1] < now:
            credentials = await in_thread(lambda: api_key_credentials(prefix=prefix))
            self.keys[prefix] = (credentials, now + (KEY_TTL if credentials else MISSING_TTL))
        else:
            credentials = cached[0]
        if credentials is None or not credentials.matches(raw) or not credentials.usable_at(datetime.now(UTC)):
            raise invalid_key()
        return credentials

    def visible(self, model: ModelView, key: KeyCredentials) -> bool:
        """Public models and models granted to the key's organization, narrowed to the
        key's allowed models when it has a list: customers edit that list, so naming a
        hidden model in it must never open that model."""
        if key.allowed_models and model.name not in key.allowed_models:
            return False
        return self.organization_sees(model, key)

    def organization_sees(self, model: ModelView, key: KeyCredentials) -> bool:
        return model.is_public or model.id in self.grants.get(key.organization_id, ())

    def usable(self, key: KeyCredentials, name: str) -> ModelView | None:
        """A (fallback) model, if this key may call it."""
        model = self.catalog.find(name)
        if model is None or not self.visible(model, key):
            return None
        return model


def _load(version: Version) -> Config:
    return Config(version, catalog_build(), model_grants(), price_book(), budget_book())


class Snapshots:
    """The worker's current Config, and the one way to get a newer one."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.config: Config | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> Config:
        """The Config to judge a new request on (loaded if there is none, or it aged out)."""
        config = self.config
        if config is not None and not config.expired:
            return config
        return await self.newer_than(config)

    async def newer_than(self, stale: Config | None) -> Config:
        """A Config loaded after ``stale`` was: another request's reload if one
        finished meanwhile, else a fresh one. Concurrent callers share one load."""
        async with self._lock:
            if self.config is not None and self.config is not stale and not self.config.expired:
                return self.config
            version = await self.client.get(redis_keys.CONFIG_VERSION)
            # The version before the rows: data newer than its label only causes a
            # needless reload, never a request judged on data older than it claims.
            self.config = await in_thread(lambda: _load(version))
            return self.config

    async def checked(self, config: Config) -> Config:
        """``config`` if Redis still has its version, else a newer Config (one Redis read)."""
        if await self.client.get(redis_keys.CONFIG_VERSION) == config.version:
            return config
        return await self.newer_than(config)

    async def fresh(self) -> Config:
        """A Config whose version Redis still has: for decisions made without a hold."""
        return await self.checked(await self.current())
