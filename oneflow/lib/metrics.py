"""``/metrics`` for the few who may read it, and what it serves.

Three kinds of figures reach Prometheus (docs/metrics.md lists every one):

- **This process's**, counted as things happen (requests and refusals in
  gateway/metrics.py, Redis round trips in oneflow/lib/scripts.py):
  prometheus_client collectors, summed over the workers by its multiprocess mode
  under gunicorn (``PROMETHEUS_MULTIPROC_DIR``).
- **This process's database pool**, sampled every few seconds by ``PoolWatch``:
  psycopg's pool keeps its own figures and tells nobody when they change.
- **The cluster's** (oneflow/lib/figures.py), the same whoever serves them: read
  from Redis at scrape time by ``ClusterFigures`` (oneflow/lib/cluster_metrics.py),
  with no SQL.

The metrics name providers, traffic and breaker states, so they are not public.
Production serves them on a port of their own that only Prometheus reaches
(``deploy/gunicorn.conf.py`` starts that server); on the user-traffic port
``MetricsEndpoint`` answers 404 there, or serves the bearer of ``METRICS_TOKEN``
when one is set. The embedded server, which has no metrics port, serves a
loopback peer without a token, so ``./scripts/run`` keeps a working ``/metrics``
on the operator's machine.

It sits outside Django on purpose: Django's host check (``ALLOWED_HOSTS``)
would refuse a scrape addressed to a pod IP.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import threading
import time
from typing import Any

from django.conf import settings
from django.db.backends.signals import connection_created
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

from oneflow.lib.asgi import ASGIApp, Receive, Scope, Send, send_error
from oneflow.lib.cluster_metrics import ClusterFigures

PATH = "/metrics"

logger = logging.getLogger(__name__)

# --- This process's -------------------------------------------------------------------------

# Connections of this process's pools, summed over the pod's live workers.
DB_POOL_CONNECTIONS = Gauge(
    "oneflow_db_pool_connections",
    "PostgreSQL connections of the pool: used (lent out or opening) or idle.",
    ["state"],
    multiprocess_mode="livesum",
)
DB_CONNECTION_ERRORS = Counter(
    "oneflow_db_connection_errors_total", "Attempts of the pool to open a PostgreSQL connection that failed."
)
BUILD_INFO = Gauge("oneflow_build_info", "The running build: always 1.", ["version", "commit"], multiprocess_mode="max")

POOL_SAMPLE_SECONDS = 5.0


class PoolWatch:
    """Copies this process's psycopg pool figures into the metrics every few seconds.

    The pools are Django's (``DATABASES[...]["OPTIONS"]["pool"]``), met when a
    connection is made (``connection_created``, sent on every checkout from a pool),
    so a process that never touches the database starts no thread. One thread
    per process, started again in a forked child. Without a pool (SQLite,
    ``DB_POOL=false``) there is nothing to sample and the gauges stay absent.
    """

    def __init__(self, every: float = POOL_SAMPLE_SECONDS) -> None:
        self.every = every
        self.pools: dict[int, Any] = {}  # id -> psycopg_pool.ConnectionPool
        self.errors_seen: dict[int, int] = {}
        self.lock = threading.Lock()
        self.pid = 0  # the process whose thread runs

    def connected(self, sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
        pool = getattr(connection, "pool", None)
        if pool is None or (id(pool) in self.pools and self.pid == os.getpid()):
            return
        with self.lock:
            if self.pid != os.getpid():  # the first connection of this process, or of a forked child
                self.pid, self.pools, self.errors_seen = os.getpid(), {}, {}
                threading.Thread(target=self._run, name="oneflow-db-pool-metrics", daemon=True).start()
            self.pools.setdefault(id(pool), pool)

    def sample(self) -> None:
        used = idle = 0
        with self.lock:
            pools = list(self.pools.items())
        for key, pool in pools:
            if pool.closed:  # Django closed it (a test changed settings): a new one comes with the next checkout
                with self.lock:
                    self.pools.pop(key, None)
                    self.errors_seen.pop(key, None)
                continue
            stats = pool.get_stats()
            available = stats.get("pool_available", 0)
            used += stats.get("pool_size", 0) - available
            idle += available
            errors = stats.get("connections_errors", 0)
            if errors > self.errors_seen.get(key, 0):
                DB_CONNECTION_ERRORS.inc(errors - self.errors_seen.get(key, 0))
            self.errors_seen[key] = errors
        DB_POOL_CONNECTIONS.labels("used").set(used)
        DB_POOL_CONNECTIONS.labels("idle").set(idle)

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            try:
                self.sample()
            except Exception:
                logger.exception("database pool metrics could not be sampled")


# The process's pools are the process's: like a Prometheus registry, this watch is too.
POOL_WATCH = PoolWatch()


def watch_database_pool() -> None:
    """Samples the pools this process opens from now on (idempotent)."""
    connection_created.connect(POOL_WATCH.connected, weak=False, dispatch_uid="oneflow.lib.metrics.pool_watch")


# --- Serving --------------------------------------------------------------------------------


def registry() -> CollectorRegistry:
    """This process's metrics, or every worker's summed under gunicorn
    (prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed)
    return summed


def served_registry(cluster: Collector | None) -> CollectorRegistry:
    """What a scrape returns: ``registry()`` and the cluster's figures."""
    served = CollectorRegistry(auto_describe=False)
    served.register(registry())  # a registry collects like any collector
    if cluster is not None:
        served.register(cluster)
    return served


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
    goes to ``app``.

    Built once per web process: it also states the build (``oneflow_build_info``)
    and starts sampling the process's database pool."""

    def __init__(self, app: ASGIApp, *, token: str, open_to_loopback: bool, cluster: Collector | None = None) -> None:
        self.app = app
        self.token = f"Bearer {token}".encode() if token else b""
        self.open_to_loopback = open_to_loopback
        self.registry = served_registry(cluster or ClusterFigures.from_settings())
        BUILD_INFO.labels(settings.ONEFLOW_VERSION, settings.GIT_COMMIT).set(1)
        watch_database_pool()

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
        # Reading the workers' files and Redis is blocking I/O: off the event loop.
        payload = await asyncio.to_thread(generate_latest, self.registry)
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload})
