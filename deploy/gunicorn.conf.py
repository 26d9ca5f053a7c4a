"""Gunicorn settings for the OneFlow web process.

    gunicorn -c deploy/gunicorn.conf.py oneflow.asgi:application

What differs between deployments comes from the environment; the rest is fixed
here on purpose.
"""

import os

from oneflow.lib.jsonlog import logger_levels

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")

# ASGI: each worker is one uvicorn event loop (uvloop + httptools). One worker
# per CPU core is the starting point; a core is the unit of capacity here.
worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# Not preloaded (the default, stated on purpose): each worker imports Django and
# opens its own event loop, DB pool and Redis clients after the fork, so no
# socket or thread is ever shared across processes.
preload_app = False

# On SIGTERM a worker stops accepting and gets this long to finish in-flight
# requests, streams included, before it is killed. Keep it below the
# orchestrator's grace period minus the preStop sleep (Kubernetes: 45 - 10).
graceful_timeout = 30

# For async workers this is a heartbeat, not a request deadline: the master
# kills a worker whose event loop has not reported for this long. A worker
# that is draining (recycled by max_requests below) stops reporting, so this
# is also how long a long stream may run on a recycling worker.
timeout = 120

# Longer than the idle timeout of the load balancer in front (AWS ALB default:
# 60 s), so the balancer, not gunicorn, closes idle connections; otherwise it can
# reuse a socket we just closed and answer the client with a 502. The uvicorn
# worker takes it as its timeout_keep_alive.
keepalive = 75

# Slow clients. uvicorn has no timeout for reading request headers, and its
# keep-alive timer restarts on every byte received, and the uvicorn worker does
# not pass gunicorn's limit_request_* on: the proxy in front must time out and
# bound headers (nginx client_header_timeout, large_client_header_buffers; see
# deploy/nginx/ and deploy/README.md). The body is bounded by the app itself:
# BODY_READ_TIMEOUT_SECONDS after the headers, a client still sending gets 408
# and its connection is closed (oneflow.lib.asgi.RequestBodyMiddleware).

# Worker recycling is off by default: a recycled worker closes its keep-alive
# connections, and clients racing that close see failed requests (the bench
# showed read errors at 64 connections). Set MAX_REQUESTS to bound a memory
# leak if one is ever found; the jitter spreads the restarts.
max_requests = int(os.environ.get("MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("MAX_REQUESTS_JITTER", "1000"))

# Peers allowed to set X-Forwarded-For / X-Forwarded-Proto (passed on to
# uvicorn). The client address Django sees, and so the per-IP login rate
# limit, comes from X-Forwarded-For only when the peer is listed here. Set it to
# the load balancer's / ingress controller's addresses or CIDR.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# The container has a read-only root filesystem: the worker heartbeat file
# goes to tmpfs (disk-backed /tmp can stall the fchmod heartbeat), and the
# gunicornc control socket, which would be created under $HOME, is off.
_shm = "/dev/shm"  # noqa: S108 - gunicorn creates its file there with mkstemp
worker_tmp_dir = _shm if os.path.isdir(_shm) else None
control_socket_disable = True

# No access log from gunicorn, nor from uvicorn (its logger gets gunicorn.access's level
# and no handler): a line per request without the request id, next to OneFlow's own
# access line per /v1 call (logger oneflow.access, docs/logging.md), would only duplicate it.
accesslog = None

# Gunicorn's and uvicorn's own lines (boot, worker exits, timeouts, errors
# escaping the app) in the same JSON shape as the app's, on stdout, through the
# same redaction filter. In a worker, Django's LOGGING then sends them to its own
# handler (oneflow/settings.py), which is the same.
_level = os.environ.get("LOG_LEVEL", "INFO")
_loggers: dict[str, dict[str, object]] = {
    "gunicorn.error": {"level": _level, "handlers": ["stdout"], "propagate": False},
    "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
}
for _name, _named_level in logger_levels("LOG_LEVELS", os.environ.get("LOG_LEVELS", "")).items():
    _loggers[_name] = {**_loggers.get(_name, {}), "level": _named_level}
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "oneflow.lib.redact.RedactingFilter"}},
    "formatters": {"json": {"()": "oneflow.lib.jsonlog.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["redact"],
            "stream": "ext://sys.stdout",
        },
    },
    "root": {"level": _level, "handlers": ["stdout"]},
    "loggers": _loggers,
}


# Prometheus: each worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR
# and /metrics sums them (prometheus_client's multiprocess mode); without it,
# each scrape would see one worker's numbers. Set here, so every gunicorn
# deployment gets it; workers inherit it. The folder is emptied at start, and a
# dead worker's live gauges are dropped.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/oneflow-prometheus")  # noqa: S108 - an emptyDir in Kubernetes


# Metrics get a port of their own, served by the master with prometheus_client's
# own HTTP server summing every worker's files: one scrape target per pod. Only
# what scrapes pods directly (Prometheus) reaches it; the Service and the ingress
# carry user traffic to the http port only, where /metrics answers 404 in
# production (or serves the bearer of METRICS_TOKEN). No Host check applies here,
# so a scrape by pod IP works. METRICS_PORT=0 turns it off.
_metrics_port = int(os.environ.get("METRICS_PORT", "9100"))
# All addresses of the pod's own network namespace.
_metrics_addr = os.environ.get("METRICS_ADDR", "0.0.0.0")


def when_ready(server: object) -> None:
    if not _metrics_port or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server  # noqa: PLC0415 - only in the master

    # After PROMETHEUS_MULTIPROC_DIR is set: it reads Redis, not prometheus_client's value class.
    from oneflow.lib.cluster_metrics import ClusterFigures  # noqa: PLC0415

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    # The figures every pod serves alike (business gauges, Celery, drain lag): docs/metrics.md.
    registry.register(ClusterFigures.from_environment())
    try:
        start_http_server(_metrics_port, _metrics_addr, registry=registry)
    except OSError as error:
        # A re-executed master (USR2) while the old one still holds the port.
        server.log.error("metrics port %s not served: %s", _metrics_port, error)  # type: ignore[attr-defined]


def on_starting(server: object) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))


def child_exit(server: object, worker: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # noqa: PLC0415 - only with multiprocess metrics on

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
