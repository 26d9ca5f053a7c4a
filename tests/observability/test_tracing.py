"""Tracing (issue 14, item 1): a /v1 request continues its client's W3C trace, its
upstream attempts and Redis phases are spans under it, a provider that may have
the context gets the attempt's, and the drain's span links back to the request.

The spans go to an in-memory exporter through ``tracing.install``: OpenTelemetry's
global provider can be set only once per process, OneFlow's own can be swapped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from accounts.models import Organization
from billing import holds, usage
from billing.holds import Event
from billing.models import UsageEvent
from billing.services import usage_drain
from billing.tasks import drain_usage
from oneflow.lib import json as oneflow_json
from oneflow.lib import redis, redis_keys, scripts, tracing
from providers.models import Provider
from tests.factories import usage_record
from tests.fakes import Behave, FakeUpstream
from tests.gateway.asgi_client import Answer, AsgiClient, tenant_key
from tests.gateway.test_adapters import route

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
CHAT = {"model": "smart", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello"}]}
ROOT = Path(__file__).resolve().parents[2]
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A provider sampling whatever the client sampled (and every root), installed for OneFlow's spans."""
    installed = TracerProvider(sampler=ParentBased(ALWAYS_ON), shutdown_on_exit=False)
    tracing.install(installed)
    yield installed
    tracing.install(None)
    installed.shutdown()


@pytest.fixture
def spans(provider: TracerProvider) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def key(transactional_db: None) -> str:
    # Events other tests left in the shared embedded stream are not this test's to drain.
    redis.sync_client().delete(redis_keys.USAGE_STREAM, redis_keys.USAGE_PENDING)
    return tenant_key()


def chat(key: str, *, headers: dict[str, str], body: dict[str, Any] = CHAT) -> Answer:
    """One request through OneFlow's whole ASGI app, in-process; its gateway is closed after."""
    client = AsgiClient(key)
    try:
        return client.post("/v1/chat/completions", json.dumps(body).encode(), headers=headers)
    finally:
        client.close()


def one(exporter: InMemorySpanExporter, kind: SpanKind) -> ReadableSpan:
    [found] = [span for span in exporter.get_finished_spans() if span.kind is kind]
    return found


def attempts(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """The upstream attempts' spans (Redis phases are CLIENT spans too)."""
    return [
        span
        for span in exporter.get_finished_spans()
        if span.kind is SpanKind.CLIENT and "oneflow.deployment_id" in (span.attributes or {})
    ]


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [found] = [span for span in exporter.get_finished_spans() if span.name == name]
    return found


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == parent.context.span_id]


def ids(context: SpanContext | None) -> tuple[int, int]:
    assert context is not None
    return context.trace_id, context.span_id


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def test_it_continues_the_clients_trace_with_spans_for_the_attempt_and_each_redis_phase(
    spans: InMemorySpanExporter, upstream: FakeUpstream, key: str
) -> None:
    deployment = route(upstream, Provider.Kind.OPENAI_COMPATIBLE)

    answer = chat(key, headers={"traceparent": TRACEPARENT})

    assert answer.status == 200
    server = one(spans, SpanKind.SERVER)
    assert hex_ids(server)[0] == CLIENT_TRACE
    assert server.parent is not None and server.parent.is_remote
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert server.name == "POST /v1/chat/completions"
    assert server.attributes is not None
    assert server.attributes["oneflow.request_id"] == answer.headers["x-request-id"]
    assert server.attributes["http.route"] == "/v1/chat/completions"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["oneflow.model"] == "smart"
    assert server.attributes["oneflow.organization_id"] == Organization.objects.get(name="Acme").pk
    assert server.attributes["gen_ai.operation.name"] == "chat"
    assert server.attributes["gen_ai.usage.output_tokens"] == json.loads(answer.body)["usage"]["completion_tokens"]
    assert server.status.status_code is StatusCode.UNSET

    under = {span.name: span for span in children(spans, server)}
    assert sorted(under) == ["chat llama-3", "redis admission", "redis settlement"]
    attempt = under["chat llama-3"]
    assert attempt.kind is SpanKind.CLIENT
    assert attempt.attributes is not None
    assert attempt.attributes["oneflow.deployment_id"] == deployment.pk
    assert attempt.attributes["oneflow.provider"] == "fake-openai_compatible"
    assert attempt.attributes["gen_ai.request.model"] == "llama-3"
    assert attempt.attributes["http.response.status_code"] == 200
    assert under["redis admission"].attributes == {
        "db.system.name": "redis",
        "db.operation.name": "EVALSHA",
        "oneflow.redis.phase": "admission",
        "oneflow.hold.granted": True,
    }
    assert under["redis settlement"].attributes is not None
    assert under["redis settlement"].attributes["oneflow.redis.phase"] == "settlement"
    assert {hex_ids(span)[0] for span in spans.get_finished_spans()} == {CLIENT_TRACE}


@pytest.mark.parametrize(
    ("kind", "stream"),
    [
        (Provider.Kind.OPENAI_COMPATIBLE, False),
        (Provider.Kind.OPENAI_COMPATIBLE, True),
        (Provider.Kind.ANTHROPIC, True),
        (Provider.Kind.GEMINI, False),
    ],
)
def test_a_provider_that_may_have_the_context_gets_the_attempts(
    spans: InMemorySpanExporter, upstream: FakeUpstream, key: str, kind: str, stream: bool
) -> None:
    route(upstream, kind, propagate_trace_context=True)

    answer = chat(key, headers={"traceparent": TRACEPARENT, "tracestate": "acme=7"}, body={**CHAT, "stream": stream})

    assert answer.status == 200
    [sent] = upstream.requests
    version, trace_id, parent_id, flags = sent.headers["traceparent"].split("-")
    [attempt] = attempts(spans)
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01")
    assert parent_id == hex_ids(attempt)[1]  # the attempt's span, not the request's nor the client's
    assert sent.headers["tracestate"] == "acme=7"


def test_a_provider_that_may_not_learns_nothing(spans: InMemorySpanExporter, upstream: FakeUpstream, key: str) -> None:
    route(upstream, Provider.Kind.OPENAI_COMPATIBLE)  # propagate_trace_context is off by default

    assert chat(key, headers={"traceparent": TRACEPARENT, "tracestate": "acme=7"}).status == 200

    [sent] = upstream.requests
    assert "traceparent" not in sent.headers
    assert "tracestate" not in sent.headers
    assert attempts(spans)  # the attempt was traced all the same


def test_a_failed_attempt_and_the_failed_request_are_marked(
    spans: InMemorySpanExporter, upstream: FakeUpstream, key: str
) -> None:
    route(upstream, Provider.Kind.OPENAI_COMPATIBLE)
    upstream.script(*[Behave(status=500)] * 3)

    answer = chat(key, headers={})

    assert answer.status == 502
    server = one(spans, SpanKind.SERVER)
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 502
    tried = attempts(spans)
    assert tried
    assert {ids(span.parent)[1] for span in tried} == {ids(server.context)[1]}
    for attempt in tried:
        assert attempt.status.status_code is StatusCode.ERROR
        assert attempt.attributes is not None
        assert attempt.attributes["error.type"] == "transient"
        assert attempt.attributes["http.response.status_code"] == 500


def test_the_drain_tasks_span_links_back_to_the_request(
    provider: TracerProvider, spans: InMemorySpanExporter, upstream: FakeUpstream, key: str
) -> None:
    route(upstream, Provider.Kind.OPENAI_COMPATIBLE)
    answer = chat(key, headers={"traceparent": TRACEPARENT})
    server = one(spans, SpanKind.SERVER)

    celery = CeleryInstrumentor()
    celery.instrument(tracer_provider=provider)
    try:
        drain_usage.apply()
    finally:
        celery.uninstrument()

    task = named(spans, "run/billing.drain_usage")
    batch = named(spans, "usage_drain batch")
    assert batch.parent is not None and task.context is not None
    assert batch.parent.span_id == task.context.span_id
    assert [ids(link.context) for link in batch.links] == [ids(server.context)]
    assert UsageEvent.objects.get().request_id == answer.headers["x-request-id"]


def test_events_without_a_traceparent_are_drained_and_not_linked(
    provider: TracerProvider, spans: InMemorySpanExporter, upstream: FakeUpstream, key: str
) -> None:
    route(upstream, Provider.Kind.OPENAI_COMPATIBLE)
    chat(key, headers={"traceparent": TRACEPARENT})
    chat(key, headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"})  # the client sampled it out
    server = one(spans, SpanKind.SERVER)
    assert len(attempts(spans)) == 1  # nothing of the sampled-out request, its children included
    # An event an older gateway appended: no traceparent field at all.
    old = {name: value for name, value in asdict(_record(key)).items() if name != "traceparent"}
    event = Event(oneflow_json.dumps(old), old["organization_id"], None, old["created_at"])
    settle = holds.settle(organization_id=old["organization_id"], hold_id="", charged_units=0, event=event)
    scripts.run(redis.sync_client(), settle)

    assert usage_drain() == 3

    assert UsageEvent.objects.count() == 3
    assert [ids(link.context) for link in named(spans, "usage_drain batch").links] == [ids(server.context)]


def _record(key: str) -> usage.UsageRecord:
    organization = Organization.objects.get(name="Acme")
    return usage_record(
        organization.pk,
        request_id="req_from_an_older_gateway",
        public_model="smart",
        provider="fake",
        prompt_tokens=1,
        completion_tokens=1,
        latency_ms=1,
        created_at=1.8e9,
    )


def test_without_tracing_nothing_is_traced_and_nothing_sent(upstream: FakeUpstream, key: str) -> None:
    """Nothing installed, as with no OTLP endpoint: the request is served, no span
    context reaches even a provider that may have it, and no event carries one."""
    route(upstream, Provider.Kind.OPENAI_COMPATIBLE, propagate_trace_context=True)

    answer = chat(key, headers={"traceparent": TRACEPARENT})

    assert answer.status == 200
    assert not tracing.enabled()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # setup() set nothing global
    [sent] = upstream.requests
    assert "traceparent" not in sent.headers
    entries: Any = redis.sync_client().xrange(redis_keys.USAGE_STREAM)
    [(_, fields)] = entries
    assert usage.decode(fields)["traceparent"] == ""
    assert usage_drain() == 1


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_endpoint_means_no_exporter(otel_env: pytest.MonkeyPatch) -> None:
    assert tracing.exporters_from_env() == []
    otel_env.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert tracing.exporters_from_env() == []


def test_an_endpoint_means_otlp_unless_turned_off(otel_env: pytest.MonkeyPatch) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert [type(e) for e in tracing.exporters_from_env()] == [OTLPSpanExporter]
    otel_env.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.exporters_from_env() == []
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    assert [type(e) for e in tracing.exporters_from_env()] == [ConsoleSpanExporter]
    otel_env.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.exporters_from_env() == []


def test_sampling_defaults_to_a_tenth_after_the_parent(otel_env: pytest.MonkeyPatch) -> None:
    sampler = tracing.sampler_from_env()
    assert sampler is not None
    assert sampler.get_description().startswith("ParentBased{root:TraceIdRatioBased{0.1}")
    otel_env.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert tracing.sampler_from_env().get_description().startswith("ParentBased{root:TraceIdRatioBased{0.25}")  # type: ignore[union-attr]
    otel_env.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    assert tracing.sampler_from_env() is None  # the SDK reads the standard variables itself


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps what it is sent."""

    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def exported(collector: str, tmp_path: Path, requests: str) -> bytes:
    """What a web process set up by the OTEL_* variables exports, in one process of its
    own (the global provider is set once per process), once ``requests`` are sent to
    its ASGI application ``app``; the batch leaves when the process ends."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_TRACES_SAMPLER": "always_on"}
    # Embedded, on a database of its own: neither request reads a table.
    env |= {"SQLITE_PATH": str(tmp_path / "db.sqlite3"), "DATABASE_URL": "", "REDIS_URL": ""}
    program = (
        "import asyncio\n"
        "from oneflow.asgi import build\n"  # sets Django up first
        "from gateway.asgi import GatewayApp\n"
        "from oneflow.lib import tracing\n"
        "from tests.gateway.asgi_client import call_app\n"
        "assert tracing.enabled()\n"
        "proxy = GatewayApp()\n"
        "app = build(proxy)\n"
        "async def main():\n"
        "    await proxy.start()\n"
        f"    {requests}\n"
        "    await proxy.stop()\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, check=True, timeout=120)  # noqa: S603
    assert [path for path, _ in _Collector.received] == ["/v1/traces"]
    return _Collector.received[0][1]


def test_with_an_endpoint_the_web_process_exports_its_requests_spans(collector: str, tmp_path: Path) -> None:
    request = f"await call_app(app, 'GET', '/v1/nothing', b'', {{'traceparent': '{TRACEPARENT}'}})"

    body = exported(collector, tmp_path, request)

    assert b"oneflow-web" in body  # service.name
    assert bytes.fromhex(CLIENT_TRACE) in body  # the request's span, in the client's trace
    assert b"http.response.status_code" in body


def test_with_an_endpoint_django_pages_are_traced_too(collector: str, tmp_path: Path) -> None:
    # Django's instrumentation traces ASGI requests only with the ASGI instrumentation installed.
    pytest.importorskip("opentelemetry.instrumentation.asgi")
    headers = {"host": "localhost", "traceparent": TRACEPARENT}
    request = f"await call_app(app, 'GET', '/no-such-page', b'', {headers!r})"

    body = exported(collector, tmp_path, request)

    assert bytes.fromhex(CLIENT_TRACE) in body
