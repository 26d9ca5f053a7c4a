"""Probes for orchestrators: cheap, unauthenticated, no secrets in the output."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from oneflow.lib import redis

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception as exc:
        logger.warning("readiness: database unreachable", extra={"error": type(exc).__name__})
        return False


def _redis_ok() -> bool:
    try:
        return bool(redis.sync_client().ping())
    except Exception as exc:
        logger.warning("readiness: redis unreachable", extra={"error": type(exc).__name__})
        return False


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer; 503 naming each one that does not."""
    checks = {"database": _database_ok(), "redis": _redis_ok()}
    failed = [name for name, ok in checks.items() if not ok]
    body = {
        "status": "ok" if not failed else "unavailable",
        "checks": {k: "ok" if v else "failed" for k, v in checks.items()},
    }
    return JsonResponse(body, status=503 if failed else 200)
