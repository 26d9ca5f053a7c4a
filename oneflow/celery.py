"""The Celery application. Tasks live in each app's ``tasks.py``."""

from __future__ import annotations

import os
import threading

from celery import Celery
from celery.beat import EmbeddedService

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneflow.settings")

app = Celery("oneflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_beat_lock = threading.Lock()
_beat: list[EmbeddedService] = []


def embedded_beat_start() -> None:
    """Runs the beat schedule in a thread of this process (embedded mode only).

    With no broker, tasks sent by beat run eagerly in that thread, so one
    process does what production splits across web, worker and beat.
    """
    with _beat_lock:
        if _beat:
            return
        service = EmbeddedService(app, thread=True)
        service.start()
        _beat.append(service)


def embedded_beat_stop() -> None:
    with _beat_lock:
        while _beat:
            _beat.pop().stop()
