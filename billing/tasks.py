"""Billing's scheduled work."""

from __future__ import annotations

from celery import shared_task

from billing import services
from billing.services.metrics import business_metrics_publish, ledger_reconcile_report


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
    return len(ledger_reconcile_report())


@shared_task(name="billing.publish_business_metrics")
def publish_business_metrics() -> None:
    business_metrics_publish()


@shared_task(name="billing.reconcile_credits")
def reconcile_credits() -> int:
    return len(services.credits_reconcile())
