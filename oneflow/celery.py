"""The Celery application. Tasks live in each app's ``tasks.py``."""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery, signals
from celery.beat import EmbeddedService

from oneflow.lib import celery_metrics, tracing  # noqa: F401 - celery_metrics connects Celery's signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneflow.settings")

app = Celery("oneflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# In the worker's main process, before its pool forks: the SDK restarts its export
# thread in each child. The embedded beat of a web process finds tracing set up already.
@signals.worker_init.connect(weak=False)
def _trace_worker(**kwargs: Any) -> None:
    tracing.setup("oneflow-worker")


@signals.beat_init.connect(weak=False)
def _trace_beat(**kwargs: Any) -> None:
    tracing.setup("oneflow-beat")


_beat_lock = threading.Lock()
_beat: list[Any] = []  # the running EmbeddedService thread, if any


def embedded_beat_start() -> None:
    """Runs the beat schedule in a thread of this process (embedded mode only).

    With no broker, tasks sent by beat run eagerly in that thread, so one
    process does what production splits across web, worker and beat.
    """
    with _beat_lock:
        if _beat:
            return
        # Beat runs a task it knows eagerly but sends one it doesn't to the
        # (here nonexistent) broker, so every app's tasks must be imported
        # first, as `celery beat` does. EmbeddedService also defaults to the
        # file-based scheduler; ours lives in the database.
        app.loader.import_default_modules()
        service: Any = EmbeddedService(app, thread=True, scheduler_cls=app.conf.beat_scheduler)
        service.start()
        _beat.append(service)


def embedded_beat_stop() -> None:
    with _beat_lock:
        while _beat:
            _beat.pop().stop()
