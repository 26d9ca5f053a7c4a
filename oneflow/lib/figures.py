"""The cluster's figures: metrics whose value does not depend on the process serving them.

Credits charged and outstanding, organizations and keys, sign-ups, Celery's
failures: the jobs that know them (a Celery worker has no metrics port) keep
them in one Redis hash, ``FIGURES_KEY``, written here.
``oneflow.lib.cluster_metrics.ClusterFigures`` serves them at scrape time, with
what Redis holds already (the usage stream, Celery's queues): no SQL, the same
answer from every web process. So aggregate them across pods with ``max``,
never ``sum``.

Light on purpose, without prometheus_client: ``oneflow/celery.py`` loads it
(through ``oneflow.lib.celery_metrics``) in every process, the gunicorn master
too, and prometheus_client must not be loaded there before
``PROMETHEUS_MULTIPROC_DIR`` is set (it picks its value class on import).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Literal

import redis
import redis.exceptions
from django.db import transaction

from oneflow.lib import redis as redis_seam

logger = logging.getLogger(__name__)

# The hash the figures live in: field "<name>" or "<name>|<label value>".
FIGURES_KEY = "oneflow:metrics"


@dataclass(frozen=True)
class Figure:
    """One metric of the cluster, as the scrape describes it; its series are hash fields."""

    name: str
    kind: Literal["counter", "gauge"]
    documentation: str
    label: str = ""  # its one label, when it has one


FIGURES = {
    figure.name: figure
    for figure in (
        Figure("oneflow_credits_charged_total", "counter", "Credits the usage drain charged to the ledger (revenue)."),
        Figure("oneflow_celery_task_failures_total", "counter", "Celery tasks that raised, by task.", "task"),
        Figure("oneflow_signups_total", "counter", "Users who signed up."),
        Figure("oneflow_credits_outstanding", "gauge", "Prepaid credits not yet spent: the sum of all balances."),
        Figure("oneflow_negative_balances", "gauge", "Billing accounts with a balance below zero (must be 0)."),
        Figure("oneflow_active_organizations", "gauge", "Organizations with a request in the last 24 hours."),
        Figure("oneflow_active_keys", "gauge", "API keys with a request in the last 24 hours."),
        Figure("oneflow_funnel_organizations", "gauge", "Organizations that reached each stage.", "stage"),
        Figure(
            "oneflow_ledger_reconciliation_mismatches",
            "gauge",
            "Accounts whose balance disagreed with their ledger at the last reconciliation.",
        ),
        Figure(
            "oneflow_business_metrics_last_success_timestamp_seconds",
            "gauge",
            "When the business figures were last computed (unix time).",
        ),
    )
}


def figure_field(name: str, label_value: str = "") -> str:
    """The hash field of one series of a figure."""
    if name not in FIGURES:
        raise KeyError(f"{name} is not one of oneflow.lib.figures.FIGURES")
    return f"{name}|{label_value}" if label_value else name


def figure_add(client: redis.Redis, name: str, amount: float | str, *, label_value: str = "") -> None:
    """Adds ``amount`` to a counter (a decimal string keeps every digit Redis keeps)."""
    # A string goes as it is: redis-py's annotation says float, Redis takes any decimal.
    client.hincrbyfloat(FIGURES_KEY, figure_field(name, label_value), amount)  # type: ignore[arg-type]


def figure_add_on_commit(name: str, amount: Decimal, *, label_value: str = "") -> None:
    """Adds ``amount`` to a counter once the current transaction commits (at once
    outside one). A Redis that does not answer then loses this increase, logged,
    and never the transaction."""
    if amount:
        transaction.on_commit(partial(_add_logged, name, amount, label_value))


def _add_logged(name: str, amount: Decimal, label_value: str) -> None:
    try:
        figure_add(redis_seam.sync_client(), name, str(amount), label_value=label_value)
    except redis.exceptions.RedisError:
        logger.warning("a figure was not counted: Redis is unavailable", extra={"figure": name, "by": str(amount)})


def figures_seed(client: redis.Redis, name: str, label_values: Iterable[str]) -> None:
    """Creates a counter's series at 0 where missing, so that the first increase of
    each is one Prometheus sees (a series that appears at 1 shows none)."""
    with client.pipeline(transaction=False) as pipe:
        for value in label_values:
            pipe.hsetnx(FIGURES_KEY, figure_field(name, value), 0)
        pipe.execute()
