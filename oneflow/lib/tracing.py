"""Tracing with OpenTelemetry: ``setup(service)`` once per process, and the few
helpers OneFlow's own spans go through (docs/tracing.md).

Configured by the standard ``OTEL_*`` variables. With no exporter to send to
(no OTLP endpoint, the embedded default) ``setup`` sets nothing: OneFlow's spans
are one shared no-op context manager and the official instrumentations stay
off, so the hot path pays an attribute read per span.

OneFlow's own spans go to the provider held here rather than straight to
OpenTelemetry's global one, which can be set only once per process: a test
installs a provider of its own (``install``) and takes it away again. Like a
Prometheus registry, the provider belongs to the process, not to an event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from oneflow.lib import redis as redis_seam

logger = logging.getLogger(__name__)

# Head sampling when OTEL_TRACES_SAMPLER is unset: a tenth of the traces that
# start here, and whatever a client's traceparent decided for its own.
DEFAULT_SAMPLE_RATIO = 0.1
# Health probes hit Django every few seconds and say nothing worth a trace.
DEFAULT_DJANGO_EXCLUDED_URLS = "healthz,readyz"

# Only W3C trace context, never baggage: a client's baggage must not reach a
# provider, and ours has nothing to say to one.
_W3C = TraceContextTextMapPropagator()
# What ``span`` returns when tracing is off: stateless, so one serves every caller.
_OFF: AbstractContextManager[Span] = contextlib.nullcontext(trace.INVALID_SPAN)
# True while a request the sampler dropped runs (server_span).
_sampled_out: ContextVar[bool] = ContextVar("oneflow_tracing_sampled_out", default=False)


class _Installed:
    """The tracer OneFlow's own spans come from; None while tracing is off."""

    tracer: trace.Tracer | None = None
    set_up = False  # setup() ran in this process


_installed = _Installed()


def setup(service: str) -> bool:
    """Sets tracing up for this process from the ``OTEL_*`` variables; True when it exports.

    Called once per process before Django loads its middleware (the Django
    instrumentation adds one): by ``oneflow.asgi`` for the web and by
    ``oneflow.celery``'s worker and beat signals. With no exporter configured it
    sets nothing at all. Otherwise: a TracerProvider named ``OTEL_SERVICE_NAME``
    (``service`` by default), sampled by ``OTEL_TRACES_SAMPLER`` (by default
    parent-based at DEFAULT_SAMPLE_RATIO, or ``OTEL_TRACES_SAMPLER_ARG``),
    batching to the exporters, and the instrumentations of Django, psycopg,
    the synchronous Redis client and Celery.
    """
    if _installed.set_up:
        return _installed.tracer is not None
    _installed.set_up = True
    exporters = exporters_from_env()
    if not exporters:
        return False
    provider = TracerProvider(sampler=sampler_from_env(), resource=_resource(service))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    install(provider)
    _instrument(provider)
    logger.info("tracing on", extra={"service": provider.resource.attributes.get(SERVICE_NAME)})
    return True


def exporters_from_env() -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``otlp`` by default), the OTLP
    one only when an endpoint is set: an unset endpoint means the embedded
    default, where nobody listens on the SDK's localhost:4318."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = {name.strip().lower() for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    exporters: list[SpanExporter] = []
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if "otlp" in names and endpoint:
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol and protocol != "http/protobuf":
            logger.warning("OTLP protocol %r is not installed; exporting over http/protobuf", protocol)
        # Endpoint, headers, timeout, compression and TLS come from the OTEL_EXPORTER_OTLP_* variables.
        exporters.append(OTLPSpanExporter())
    if "console" in names:
        exporters.append(ConsoleSpanExporter())
    unknown = names - {"otlp", "console", "none", ""}
    if unknown:
        logger.warning("unknown OTEL_TRACES_EXPORTER values ignored: %s", ", ".join(sorted(unknown)))
    return exporters


def sampler_from_env() -> Sampler | None:
    """Parent-based at DEFAULT_SAMPLE_RATIO (or ``OTEL_TRACES_SAMPLER_ARG``) when
    ``OTEL_TRACES_SAMPLER`` is unset; None when it is set, so the SDK reads it."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "")
    try:
        ratio = float(raw) if raw.strip() else DEFAULT_SAMPLE_RATIO
    except ValueError:
        logger.warning("OTEL_TRACES_SAMPLER_ARG %r is not a number; sampling %s", raw, DEFAULT_SAMPLE_RATIO)
        ratio = DEFAULT_SAMPLE_RATIO
    return ParentBased(TraceIdRatioBased(min(max(ratio, 0.0), 1.0)))


def _resource(service: str) -> Resource:
    """The SDK's resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``),
    named ``service`` when neither names the service."""
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: service}))
    return detected


def _instrument(provider: TracerProvider) -> None:
    """The official instrumentations, on ``provider``. Not the aiohttp client's:
    the gateway's upstream calls get spans and headers of its own (attempts),
    so a provider learns our trace ids only when its operator says so."""
    excluded = None if os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") else DEFAULT_DJANGO_EXCLUDED_URLS
    DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=excluded)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    # The synchronous client only (Django side, jobs): the gateway's asyncio client
    # makes one call per phase, each already a span of its own.
    RedisInstrumentor.instrument_client(redis_seam.sync_client(), tracer_provider=provider)
    # Publishing carries the context in the task's headers; running continues it.
    CeleryInstrumentor().instrument(tracer_provider=provider)


def install(provider: trace.TracerProvider | None) -> None:
    """Sends OneFlow's own spans to ``provider``; None turns them off."""
    _installed.tracer = None if provider is None else provider.get_tracer("oneflow")


def enabled() -> bool:
    return _installed.tracer is not None


def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, links: Sequence[Link] = ()) -> AbstractContextManager[Span]:
    """A span around a block, child of the current one; the shared no-op when tracing is off.

    An exception leaving the block marks the span ERROR (its type and message;
    OneFlow's errors carry only what the client may see). Callers set
    attributes only when ``span.is_recording()``: an unsampled span drops them.
    """
    tracer = _installed.tracer
    if tracer is None or _sampled_out.get():
        return _OFF
    return tracer.start_as_current_span(name, kind=kind, links=links, record_exception=False)


def server_span(name: str, headers: Mapping[str, str]) -> AbstractContextManager[Span]:
    """The span of one request served, continuing the trace of the client's W3C
    ``traceparent`` (and ``tracestate``) when it sent one.

    A request the sampler drops gets no current span at all, only a mark that skips
    its children (a standard sampler decides a trace as a whole, so they would be
    dropped too): making a non-recording span current, and every later look at it,
    measured half of a dropped request's cost (docs/tracing.md, "Overhead"). Its log
    lines carry no trace id, which no trace store would know anyway.
    """
    tracer = _installed.tracer
    if tracer is None:
        return _OFF
    span = tracer.start_span(name, context=_W3C.extract(headers), kind=SpanKind.SERVER)
    if not span.is_recording():
        return _SampledOut()
    return trace.use_span(span, end_on_exit=True, record_exception=False)


class _SampledOut:
    """The context of a request the sampler dropped."""

    __slots__ = ("token",)

    def __enter__(self) -> Span:
        self.token = _sampled_out.set(True)
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        _sampled_out.reset(self.token)


def with_trace_context(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` and the current span's ``traceparent`` (and ``tracestate``), when it records."""
    if _installed.tracer is None or not trace.get_current_span().is_recording():
        return headers
    carrier = dict(headers)
    _W3C.inject(carrier)
    return carrier


def traceparent() -> str:
    """The current span as a W3C ``traceparent`` when it is sampled, else ""."""
    if _installed.tracer is None:
        return ""
    context = trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled:
        return ""
    # The W3C version-00 form, as the propagator writes it (tracestate is not kept).
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def links(traceparents: Iterable[str], *, limit: int) -> list[Link]:
    """A link to each valid ``traceparent`` (empty ones skipped), the first ``limit`` of them."""
    found: list[Link] = []
    if _installed.tracer is None:
        return found
    for value in traceparents:
        if not value:
            continue
        context = trace.get_current_span(_W3C.extract({"traceparent": value})).get_span_context()
        if context.is_valid:
            found.append(Link(context))
            if len(found) >= limit:
                break
    return found


def failed(span: Span, error_type: str) -> None:
    """Marks a recording span as failed: status ERROR and ``error.type``."""
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, error_type))
        span.set_attribute("error.type", error_type)
