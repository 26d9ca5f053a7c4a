"""ASGI entry point: ``gunicorn oneflow.asgi:application -k uvicorn_worker.UvicornWorker``."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneflow.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application

from oneflow.celery import embedded_beat_start, embedded_beat_stop
from oneflow.lib.asgi import BodySizeLimitMiddleware, LifespanMiddleware, RequestIdMiddleware


def _startup() -> None:
    if settings.ONEFLOW_EMBEDDED_BEAT:
        embedded_beat_start()


def _shutdown() -> None:
    embedded_beat_stop()


application = LifespanMiddleware(
    RequestIdMiddleware(
        BodySizeLimitMiddleware(get_asgi_application(), limit=settings.MAX_REQUEST_BODY_BYTES),
    ),
    on_startup=_startup,
    on_shutdown=_shutdown,
)
