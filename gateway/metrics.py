"""Prometheus metrics of the proxy API, for Prometheus only: served on the
metrics port under gunicorn, and at /metrics by oneflow.lib.metrics (404 on the
user-traffic port in production unless METRICS_TOKEN is set).

Labels are bounded: the public model (unknown names fold into "other"), the
provider name (operator-defined, few), the status class, a refusal's reason (a
fixed set, from the error code), the kind of limit. Never an organization, a
key, a request or a name the client sent. Under several gunicorn workers,
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by
deploy/gunicorn.conf.py) sums the workers' values. docs/metrics.md lists them all.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from gateway.errors import GatewayError
from gateway.limits import Decision, Kind
from providers.adapters import UpstreamError
from providers.selectors import DeploymentView, ModelView


class Elapsed(Protocol):
    def elapsed_ms(self) -> float: ...


class Judged(Protocol):
    """What the metrics read of a request's limits (gateway.guards.Guards is one)."""

    @property
    def decision(self) -> Decision | None: ...


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

    @property
    def guards(self) -> Judged | None: ...


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

REFUSALS = Counter("oneflow_refusals_total", "Requests the gateway refused, by reason.", ["reason"])
# The reason of each error code the gateway refuses with. A 4xx with another code is the
# client's own request (invalid_request); anything else (upstream_*, 5xx) is no refusal.
REFUSAL_REASONS = {
    "rate_limit_exceeded": "rate_limit",
    "budget_exceeded": "budget",
    "insufficient_quota": "insufficient_credits",
    "invalid_api_key": "invalid_key",
    "missing_model": "invalid_request",
    "model_not_found": "model_not_found",
    "model_not_allowed": "model_not_allowed",
    "model_not_priced": "model_not_priced",
    "billing_configuration_invalid": "billing_configuration_invalid",
    "model_unavailable": "model_unavailable",
    "no_matching_provider": "no_matching_provider",
    "circuit_open": "circuit_open",
    "configuration_changing": "configuration_changing",
    "hold_unavailable": "hold_unavailable",
}
RATE_LIMIT_NEAR = Counter(
    "oneflow_rate_limit_near_total",
    "Admitted requests that left less than 10 % of a key's or organization's limit.",
    ["limit"],
)
_NEAR_LIMITS = {Kind.REQUESTS: "requests", Kind.INPUT_TOKENS: "tokens", Kind.OUTPUT_TOKENS: "tokens"}


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def upstream_failed(call: Finished, error: UpstreamError) -> None:
    UPSTREAM_ERRORS.labels(call.provider or "none", error.kind.value).inc()


def refusal_reason(error: GatewayError) -> str | None:
    """The bounded reason a refusal is counted under; None for what is no refusal."""
    reason = REFUSAL_REASONS.get(error.code or "")
    if reason is None and 400 <= error.status < 500 and not (error.code or "").startswith("upstream_"):
        return "invalid_request"
    return reason


def refused(error: GatewayError) -> None:
    reason = refusal_reason(error)
    if reason is not None:
        REFUSALS.labels(reason).inc()


def _limits_near(decision: Decision | None) -> None:
    """Counts, once per kind, an admitted request after which a rate limit of its key
    or organization has less than a tenth left (concurrency slots come back by themselves)."""
    if decision is None or not decision.admitted:
        return
    near = {
        _NEAR_LIMITS[state.rule.kind]
        for state in decision.states
        if state.rule.kind in _NEAR_LIMITS and state.remaining * 10 < state.limit
    }
    for limit in near:
        RATE_LIMIT_NEAR.labels(limit).inc()


def request_done(call: Finished) -> None:
    _limits_near(call.guards.decision if call.guards else None)
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
