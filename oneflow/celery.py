"""The Celery application. Tasks live in each app's ``tasks.py``."""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from celery.beat import EmbeddedService

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneflow.settings")

app = Celery("oneflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

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
