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
    BodySizeLimitMiddleware,
    LifespanMiddleware,
    PathRouter,
    RequestIdMiddleware,
    shutdown_hooks,
)


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


routed = PathRouter(django_application, {"/v1/": import_string(settings.ONEFLOW_PROXY_APP)})
application = LifespanMiddleware(
    RequestIdMiddleware(BodySizeLimitMiddleware(routed, limit=settings.MAX_REQUEST_BODY_BYTES)),
    on_startup=_startup,
    on_shutdown=_shutdown,
)
