"""Billing's scheduled work."""

from __future__ import annotations

from celery import shared_task

from billing import services


@shared_task(name="billing.drain_usage")
def drain_usage() -> int:
    return services.usage_drain()


@shared_task(name="billing.rollup_usage")
def rollup_usage() -> int:
    return services.usage_rollup()
