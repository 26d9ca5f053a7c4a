"""What the gateway knows without asking the database: keys and the model catalog.

Both live in process. Each request compares the configuration version in
Redis (oneflow.lib.config_version), read by the same script that holds its
credits; when it moved, the snapshots are dropped and read again and the
request is judged once more, so an admin edit or a revoked key takes effect on
the next request in every worker.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import redis.asyncio

from accounts.keys import raw_key_prefix
from accounts.selectors import KeyCredentials, api_key_credentials
from billing.selectors import BudgetBook, PriceBook, budget_book, price_book
from oneflow.lib import config_version
from oneflow.lib.db import in_thread
from providers.selectors import Catalog, ModelView, catalog_build
from routing.errors import invalid_key
from routing.selectors import model_grants

KEY_TTL = 60.0  # seconds a key stays cached even if nothing changes
MISSING_TTL = 30.0  # unknown prefixes, so a stream of bad keys does not hit the DB
CATALOG_TTL = 300.0


class Snapshots:
    def __init__(self) -> None:
        self.version: bytes | str | None = None
        self.keys: dict[str, tuple[KeyCredentials | None, float]] = {}
        self.catalog: Catalog | None = None
        self.grants: dict[int, frozenset[int]] = {}
        self.prices = PriceBook(versions={}, markups={})
        self.budgets = BudgetBook(organizations={}, keys={})
        self.catalog_at = 0.0
        self._catalog_lock = asyncio.Lock()

    def is_current(self, version: bytes | str | None) -> bool:
        return version == self.version

    def reset(self, version: bytes | str | None) -> None:
        self.version = version
        self.keys.clear()
        self.catalog = None

    async def refresh(self, client: redis.asyncio.Redis) -> bool:
        """Reads the version and drops stale snapshots; True when they were stale."""
        version = await client.get(config_version.KEY)
        if self.is_current(version):
            return False
        self.reset(version)
        return True

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

    async def get_catalog(self) -> Catalog:
        catalog = self.catalog
        if catalog is not None and time.monotonic() - self.catalog_at < CATALOG_TTL:
            return catalog
        async with self._catalog_lock:
            if self.catalog is None or time.monotonic() - self.catalog_at >= CATALOG_TTL:
                self.catalog, self.grants, self.prices, self.budgets = await in_thread(
                    lambda: (catalog_build(), model_grants(), price_book(), budget_book())
                )
                self.catalog_at = time.monotonic()
            assert self.catalog is not None  # noqa: S101 - set just above or by the lock's previous holder
            return self.catalog

    def visible(self, model: ModelView, key: KeyCredentials) -> bool:
        """Public models and models granted to the key's organization, narrowed to the
        key's allowed models when it has a list: customers edit that list, so naming a
        hidden model in it must never open that model."""
        if key.allowed_models and model.name not in key.allowed_models:
            return False
        return self.organization_sees(model, key)

    def organization_sees(self, model: ModelView, key: KeyCredentials) -> bool:
        return model.is_public or model.id in self.grants.get(key.organization_id, ())


snapshots = Snapshots()
