"""Celery's task failures, counted where Prometheus reads them.

A worker has no metrics port, so it counts into the cluster's figures in Redis
(``oneflow.lib.figures.FIGURES``), which every web process serves:
``oneflow_celery_task_failures_total{task}``, one series per registered task (a
fixed set: the code's own tasks), each created at 0 when a worker starts so that
its first failure is an increase Prometheus sees.

Connected by importing this module (``oneflow/celery.py`` does).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, signals
from redis.exceptions import RedisError

from oneflow.lib import redis as redis_seam
from oneflow.lib.figures import figure_add, figures_seed

logger = logging.getLogger(__name__)

FAILURES = "oneflow_celery_task_failures_total"


def task_label(task: Task | None) -> str:
    """The task's registered name; "other" for anything the app does not know."""
    name = str(getattr(task, "name", ""))
    return name if task is not None and name in task.app.tasks else "other"


def _count(task: Task | None) -> None:
    try:
        figure_add(redis_seam.sync_client(), FAILURES, 1, label_value=task_label(task))
    except RedisError:
        logger.warning("a task failure could not be counted: Redis is unavailable", exc_info=True)


@signals.task_failure.connect(weak=False)
def _failed(sender: Task | None = None, **kwargs: Any) -> None:
    _count(sender)


@signals.task_postrun.connect(weak=False)
def _ended(sender: Task | None = None, state: str | None = None, **kwargs: Any) -> None:
    # A task run eagerly with task_eager_propagates (embedded mode, the tests) raises
    # to its caller before Celery records the failure: no task_failure is sent, and
    # the run ends with no state at all.
    if state is None and sender is not None and sender.request.is_eager:
        _count(sender)


@signals.worker_ready.connect(weak=False)
def _ready(sender: Any = None, **kwargs: Any) -> None:
    try:
        figures_seed(redis_seam.sync_client(), FAILURES, list(sender.app.tasks))
    except RedisError:
        logger.warning("the task failure series could not be created: Redis is unavailable", exc_info=True)
