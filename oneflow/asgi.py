"""ASGI entry point: ``gunicorn oneflow.asgi:application -k uvicorn_worker.UvicornWorker``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneflow.settings")
# Sets Django up; the imports below reach DRF and models, which need that first.
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

from oneflow.celery import embedded_beat_start, embedded_beat_stop  # noqa: E402
from oneflow.lib import http, redis  # noqa: E402
from oneflow.lib.asgi import (  # noqa: E402
    ASGIApp,
    LifespanMiddleware,
    PathRouter,
    RequestBodyMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    shutdown_hooks,
)
from oneflow.lib.metrics import MetricsEndpoint  # noqa: E402


def _startup() -> None:
    if settings.ONEFLOW_EMBEDDED_BEAT:
        embedded_beat_start()


async def _shutdown() -> None:
    embedded_beat_stop()
    for hook in shutdown_hooks:
        await hook()
    # Close this loop's pooled connections cleanly instead of at interpreter exit.
    await http.close()
    await redis.close_loop_client()


def build() -> ASGIApp:
    """The whole web application, wrapped as the current settings say (tests build
    one under other settings)."""
    metrics = MetricsEndpoint(
        django_application, token=settings.METRICS_TOKEN, open_to_loopback=not settings.PRODUCTION
    )
    routed = PathRouter(metrics, {"/v1/": import_string(settings.ONEFLOW_PROXY_APP)})
    bounded = RequestBodyMiddleware(
        routed, limit=settings.MAX_REQUEST_BODY_BYTES, seconds=settings.BODY_READ_TIMEOUT_SECONDS
    )
    # Outermost but for the request id, so the wrappers' own answers carry it too.
    secured = SecurityHeadersMiddleware(bounded, headers=[(b"x-content-type-options", b"nosniff")])
    return LifespanMiddleware(RequestIdMiddleware(secured), on_startup=_startup, on_shutdown=_shutdown)


application = build()
