"""One number in Redis that changes whenever gateway configuration changes.

Web workers keep keys, models and deployments in process and compare this
version on each request; a change (an admin edit, a revoked key) empties
their snapshots, so edits reach every worker at once, without a restart.
"""

from __future__ import annotations

from django.db import transaction

from oneflow.lib import redis

KEY = "oneflow:config:version"


def bump() -> None:
    """Advances the version once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: redis.sync_client().incr(KEY))
