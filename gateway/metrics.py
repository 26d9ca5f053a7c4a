"""Prometheus metrics of the proxy API, for Prometheus only: served on the
metrics port under gunicorn, and at /metrics by oneflow.lib.metrics (404 on the
user-traffic port in production unless METRICS_TOKEN is set).

Labels are bounded: the public model (unknown names fold into "other"), the
provider name (operator-defined, few), the status class. Under several
gunicorn workers, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set by deploy/gunicorn.conf.py) sums the workers' values.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from providers.adapters import UpstreamError
from providers.selectors import DeploymentView, ModelView


class Elapsed(Protocol):
    def elapsed_ms(self) -> float: ...


class Finished(Protocol):
    """What the metrics read of a finished request (gateway.call.Call is one): named
    here, not imported, so that breakers, which report here, need not load Call."""

    endpoint: str
    model: ModelView | None
    deployment: DeploymentView | None
    status_code: int
    ttft_ms: int | None
    upstream_ms: float | None
    usage: dict[str, Any] | None

    @property
    def request(self) -> Elapsed: ...

    @property
    def provider(self) -> str: ...


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)

REQUESTS = Counter("oneflow_requests_total", "Proxied requests.", ["endpoint", "model", "provider", "status_class"])
TOKENS = Counter("oneflow_tokens_total", "Tokens billed.", ["model", "provider", "type"])
TOKENS_PER_REQUEST = Histogram(
    "oneflow_request_tokens", "Tokens per request.", ["model", "type"], buckets=_TOKEN_BUCKETS
)
DURATION = Histogram(
    "oneflow_request_duration_seconds",
    "Time from request to last byte.",
    ["endpoint", "model"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_LATENCY = Histogram(
    "oneflow_upstream_latency_seconds",
    "Upstream time of non-streaming calls.",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "oneflow_time_to_first_token_seconds",
    "Time to the first streamed chunk.",
    ["model", "provider"],
    buckets=_LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "oneflow_gateway_overhead_seconds", "Request time not spent upstream (non-streaming).", buckets=_OVERHEAD_BUCKETS
)
UPSTREAM_ERRORS = Counter("oneflow_upstream_errors_total", "Failed upstream attempts.", ["provider", "kind"])
# The breaker's state lives in Redis and any worker may see it change, so the
# series shows the value set most recently by any process ("mostrecent"):
# "max" would keep showing open from a worker that saw it open and has not
# seen it close, and a "live" mode would lose the state with a recycled worker.
BREAKER_STATE = Gauge(
    "oneflow_breaker_state",
    "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
    ["deployment"],
    multiprocess_mode="mostrecent",
)
BREAKER_TRANSITIONS = Counter(
    "oneflow_breaker_transitions_total", "Circuit breaker state changes.", ["deployment", "from", "to"]
)
_BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def upstream_failed(call: Finished, error: UpstreamError) -> None:
    UPSTREAM_ERRORS.labels(call.provider or "none", error.kind.value).inc()


def request_done(call: Finished) -> None:
    model = call.model.name if call.model else "other"
    provider = call.provider or "none"
    REQUESTS.labels(call.endpoint, model, provider, _status_class(call.status_code)).inc()
    elapsed = call.request.elapsed_ms() / 1000
    DURATION.labels(call.endpoint, model).observe(elapsed)
    if call.ttft_ms is not None:
        TTFT.labels(model, provider).observe(call.ttft_ms / 1000)
    if call.upstream_ms is not None:
        UPSTREAM_LATENCY.labels(provider).observe(call.upstream_ms / 1000)
        OVERHEAD.observe(max(0.0, elapsed - call.upstream_ms / 1000))
    if call.usage:
        prompt = int(call.usage.get("prompt_tokens") or 0)
        completion = int(call.usage.get("completion_tokens") or 0)
        TOKENS.labels(model, provider, "input").inc(prompt)
        TOKENS.labels(model, provider, "output").inc(completion)
        TOKENS_PER_REQUEST.labels(model, "input").observe(prompt)
        TOKENS_PER_REQUEST.labels(model, "output").observe(completion)


def breaker_changed(deployment_id: int, before: str, after: str) -> None:
    BREAKER_STATE.labels(str(deployment_id)).set(_BREAKER_VALUES[after])
    BREAKER_TRANSITIONS.labels(str(deployment_id), before, after).inc()
