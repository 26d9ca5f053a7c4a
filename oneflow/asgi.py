"""ASGI entry point: ``gunicorn oneflow.asgi:application -k uvicorn_worker.UvicornWorker``."""

from __future__ import annotations

import os
from typing import Protocol

from django.core.asgi import get_asgi_application

from oneflow.lib import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneflow.settings")
# Before Django loads its middleware: the Django instrumentation adds one (when tracing is on).
tracing.setup("oneflow-web")
# Sets Django up; the imports below reach DRF and models, which need that first.
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

from oneflow.celery import embedded_beat_start, embedded_beat_stop  # noqa: E402
from oneflow.lib.asgi import (  # noqa: E402
    ASGIApp,
    LifespanMiddleware,
    PathRouter,
    Receive,
    RequestBodyMiddleware,
    RequestIdMiddleware,
    Scope,
    SecurityHeadersMiddleware,
    Send,
)
from oneflow.lib.metrics import MetricsEndpoint  # noqa: E402


class GatewayApp(Protocol):
    """The /v1 app: an ASGI app started and stopped with the server (gateway.asgi.GatewayApp)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def build(proxy: GatewayApp | None = None) -> ASGIApp:
    """The whole web application, wrapped as the current settings say (tests build
    one under other settings). The /v1 app is built here too (a class named by
    settings, since nothing may import the gateway) and started and stopped with
    the server: it opens the worker's clients at startup and closes them last.
    A test may pass its own, to reach its gateway."""
    proxy = proxy or import_string(settings.ONEFLOW_PROXY_APP)()

    async def startup() -> None:
        await proxy.start()
        if settings.ONEFLOW_EMBEDDED_BEAT:
            embedded_beat_start()

    async def shutdown() -> None:
        embedded_beat_stop()
        await proxy.stop()

    metrics = MetricsEndpoint(
        django_application, token=settings.METRICS_TOKEN, open_to_loopback=not settings.PRODUCTION
    )
    routed = PathRouter(metrics, {"/v1/": proxy})
    bounded = RequestBodyMiddleware(
        routed, limit=settings.MAX_REQUEST_BODY_BYTES, seconds=settings.BODY_READ_TIMEOUT_SECONDS
    )
    # Outermost but for the request id, so the wrappers' own answers carry it too.
    secured = SecurityHeadersMiddleware(bounded, headers=[(b"x-content-type-options", b"nosniff")])
    return LifespanMiddleware(RequestIdMiddleware(secured), on_startup=startup, on_shutdown=shutdown)


application = build()
