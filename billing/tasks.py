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


@shared_task(name="billing.apply_usage_retention")
def apply_usage_retention() -> int:
    return services.usage_retention_apply()


@shared_task(name="billing.reconcile_ledgers")
def reconcile_ledgers() -> int:
    return len(services.ledger_reconcile_all())


@shared_task(name="billing.reconcile_credits")
def reconcile_credits() -> int:
    return len(services.credits_reconcile())
