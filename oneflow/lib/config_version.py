"""One number in Redis that changes whenever gateway configuration changes.

Web workers keep keys, models and deployments in process and compare this
version on each request; a change (an admin edit, a revoked key) empties
their snapshots, so edits reach every worker at once, without a restart.
Models the gateway caches derive from GatewayConfig, so that no write to
them, whatever path it takes, can leave the version where it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from django.db import models, transaction
from django.db.models import signals

from oneflow.lib import redis, redis_keys

KEY = redis_keys.CONFIG_VERSION

Version = bytes | str | None  # the version as a Redis client returns it (None: never bumped)


def bump() -> None:
    """Advances the version once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: redis.sync_client().incr(KEY))


class WatchedQuerySet(models.QuerySet[Any]):
    """Bulk writes that send no signal (update, bulk_create, bulk_update) bump the version too."""

    def update(self, **kwargs: Any) -> int:
        rows = super().update(**kwargs)
        if rows and _matters(self.model, kwargs):
            bump()
        return rows

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        created = super().bulk_create(objs, *args, **kwargs)
        if created:
            bump()
        return created

    def bulk_update(self, objs: Iterable[Any], fields: Iterable[str], batch_size: int | None = None) -> int:
        fields = list(fields)
        rows = super().bulk_update(objs, fields, batch_size=batch_size)
        if rows and _matters(self.model, fields):
            bump()
        return rows


class GatewayConfig(models.Model):
    """A model whose rows the gateway keeps in process (gateway.snapshots).

    Every write to it advances the version, whatever made it: a service, the
    admin, the shell, a bulk update, a data migration run through the models.
    Saves and deletes through signals (connected for each subclass, proxies
    included), bulk writes through WatchedQuerySet. Fields the gateway does not
    read and that change on the hot path's side (a key's last use, a balance)
    are named in ``config_ignored_fields`` so that they never invalidate it.
    """

    config_ignored_fields: ClassVar[frozenset[str]] = frozenset()

    objects = WatchedQuerySet.as_manager()

    class Meta:
        abstract = True


def _matters(model: type[models.Model], fields: Iterable[str]) -> bool:
    ignored: frozenset[str] = getattr(model, "config_ignored_fields", frozenset())
    return any(field not in ignored for field in fields)


def _saved(sender: type[models.Model], update_fields: Iterable[str] | None = None, **_: Any) -> None:
    if update_fields is None or _matters(sender, update_fields):
        bump()


def _deleted(**_: Any) -> None:
    bump()


def _watch(sender: type[models.Model], **_: Any) -> None:
    if issubclass(sender, GatewayConfig) and not sender._meta.abstract:
        signals.post_save.connect(_saved, sender=sender, weak=False)
        signals.post_delete.connect(_deleted, sender=sender, weak=False)


def _migrated(**_: Any) -> None:
    # A data migration writes through historical models (or plain SQL), which
    # carry none of the above: after any migrate run, every gateway reloads.
    bump()


signals.class_prepared.connect(_watch, weak=False)
signals.post_migrate.connect(_migrated, weak=False, dispatch_uid="oneflow.config_version.migrated")
