"""``/metrics`` on the user-traffic port, for the few who may read it.

The metrics name providers, traffic and breaker states, so they are not public.
Production serves them on a port of their own that only Prometheus reaches
(``deploy/gunicorn.conf.py`` starts that server); on the user-traffic port this
endpoint answers 404 there, or serves the bearer of ``METRICS_TOKEN`` when one
is set. The embedded server, which has no metrics port, serves a loopback peer
without a token, so ``./scripts/run`` keeps a working ``/metrics`` on the
operator's machine.

It sits outside Django on purpose: Django's host check (``ALLOWED_HOSTS``)
would refuse a scrape addressed to a pod IP.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from oneflow.lib.asgi import ASGIApp, Receive, Scope, Send, send_error

PATH = "/metrics"


def registry() -> CollectorRegistry:
    """This process's metrics, or every worker's summed under gunicorn
    (prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed)
    return summed


def _is_loopback(scope: Scope) -> bool:
    # uvicorn puts the X-Forwarded-For address here when a trusted proxy sent
    # one, so a public client behind a local reverse proxy is not loopback.
    client = scope.get("client")
    try:
        return client is not None and ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


class MetricsEndpoint:
    """Serves ``GET /metrics`` to the bearer of ``token`` or, when
    ``open_to_loopback``, to a loopback peer; answers 404 to everyone else (401
    when a token exists, so a misconfigured scraper says why). Every other path
    goes to ``app``."""

    def __init__(self, app: ASGIApp, *, token: str, open_to_loopback: bool) -> None:
        self.app = app
        self.token = f"Bearer {token}".encode() if token else b""
        self.open_to_loopback = open_to_loopback
        self.registry = registry()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        if self.token and not self._bears_token(scope):
            challenge = (b"www-authenticate", b'Bearer realm="metrics"')
            await send_error(
                scope, send, 401, "A metrics token is required.", code="invalid_token", headers=[challenge]
            )
        elif not self.token and not (self.open_to_loopback and _is_loopback(scope)):
            await send_error(scope, send, 404, "Not found.", code="not_found")
        elif scope["method"] not in ("GET", "HEAD"):
            await send_error(scope, send, 405, "Use GET.", code="method_not_allowed", headers=[(b"allow", b"GET")])
        else:
            await self._serve(scope, send)

    def _bears_token(self, scope: Scope) -> bool:
        sent = dict(scope["headers"]).get(b"authorization", b"")
        return hmac.compare_digest(sent, self.token)

    async def _serve(self, scope: Scope, send: Send) -> None:
        # Reading the workers' files is blocking I/O: off the event loop.
        payload = await asyncio.to_thread(generate_latest, self.registry)
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload})
