"""CPU per /v1 request with tracing off, on at 10 % sampling and on at 100 %.

Drives OneFlow's whole ASGI application in-process (no socket; the simulator
provider answers at once, so the figure is OneFlow's own CPU) in rounds: each
round sends one request in each mode, in a fresh random order, so the modes
share whatever else the machine is doing request by request. The modes:
tracing off; "off, control", the same again, whose distance from "off" is
the noise; on at 10 % and on at 100 %, exporting over OTLP/HTTP to a
throwaway collector on loopback, in a process of its own so that its CPU is
not counted.

A request's CPU is the event loop thread's CPU while it runs; a mode's export
is the CPU its exporter spends on the SDK's export thread, spread over the
mode's requests. Rounds are grouped in blocks; per block each mode is compared
with "off" of the same block, and the median and interquartile range of those
differences are printed.

    .venv/bin/python bench/tracing_overhead.py [--requests 100] [--blocks 30] [--stream]

Embedded by default: SQLite in a temporary folder and the in-process Redis.
With REDIS_URL (and DATABASE_URL naming a scratch database, which it migrates)
it runs on those instead. Needs nothing outside the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneflow.settings")
os.environ["ONEFLOW_EMBEDDED_BEAT"] = "false"  # the bench drains usage itself, between blocks
for _name in [name for name in os.environ if name.startswith("OTEL_")]:
    del os.environ[_name]  # the bench installs its own providers; setup() must find nothing
if not os.environ.get("DATABASE_URL"):
    os.environ["SQLITE_PATH"] = str(Path(tempfile.mkdtemp(prefix="oneflow-bench-")) / "db.sqlite3")

import django  # noqa: E402

django.setup()

from decimal import Decimal  # noqa: E402

from django.core.management import call_command  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: E402

from accounts import services as accounts  # noqa: E402
from accounts.models import Organization  # noqa: E402
from billing.services import credits_grant, usage_drain  # noqa: E402
from gateway.asgi import GatewayApp  # noqa: E402
from oneflow.asgi import build  # noqa: E402
from oneflow.lib import json, tracing  # noqa: E402
from oneflow.lib.http import HttpClient  # noqa: E402
from providers.models import Credential, Deployment, Provider, PublicModel  # noqa: E402
from providers.services import DEMO_CHAT_MODEL, catalog_seed_demo, credential_set_secret  # noqa: E402

# The throwaway collector: answers every OTLP/HTTP export, counts what it got. With
# --upstream http it is also the provider: an OpenAI-compatible chat answer, always the same.
SINK = """
import asyncio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
seen = {"exports": 0, "spans": 0, "bytes": 0}
ANSWER = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}
async def chat(request):
    await request.read()
    return web.json_response(ANSWER)
async def traces(request):
    body = await request.read()
    batch = ExportTraceServiceRequest.FromString(body)
    seen["exports"] += 1
    seen["bytes"] += len(body)
    seen["spans"] += sum(len(s.spans) for r in batch.resource_spans for s in r.scope_spans)
    return web.Response(body=b"", content_type="application/x-protobuf")
async def stats(request):
    return web.json_response(seen)
async def main():
    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def tenant(upstream: str | None) -> str:
    """The demo catalog on an instant simulator, or on the OpenAI-compatible ``upstream``,
    and a funded key whose limits never bind."""
    catalog_seed_demo()
    Provider.objects.filter(kind=Provider.Kind.SIMULATOR).update(simulator={})
    if upstream is not None:
        provider = Provider.objects.create(
            name=f"bench-{time.time_ns()}", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=upstream
        )
        credential = Credential.objects.create(provider=provider, name="bench")
        credential_set_secret(credential=credential, secret="sk-bench")  # noqa: S106 - the sink takes any
        model = PublicModel.objects.get(name=DEMO_CHAT_MODEL)
        Deployment.objects.filter(public_model=model).update(enabled=False)
        Deployment.objects.create(
            public_model=model, provider=provider, credential=credential, upstream_model=model.name
        )
    email = f"bench-{time.time_ns()}@oneflow.local"
    owner = accounts.user_create(email=email, password="bench bench bench bench")  # noqa: S106 - a throwaway tenant
    organization = accounts.organization_create(name="Tracing bench", owner=owner)
    credits_grant(organization=organization, amount=Decimal(10) ** 9, idempotency_key=f"bench-{organization.pk}")
    Organization.objects.filter(pk=organization.pk).update(limit_rpm=2_000_000_000, limit_rph=2_000_000_000)
    return accounts.api_key_create(organization=organization, name="bench", created_by=owner).raw


async def call(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One request through the ASGI app, the body sent whole; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    done = asyncio.Event()
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)
    done.set()
    return status


class Metered(SpanExporter):
    """The OTLP exporter, adding up the CPU its exports take on the SDK's export thread."""

    def __init__(self, endpoint: str) -> None:
        self.inner = OTLPSpanExporter(endpoint=endpoint)
        self.cpu = 0.0  # seconds

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        started = time.thread_time()
        try:
            return self.inner.export(spans)
        finally:
            self.cpu += time.thread_time() - started

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class Mode:
    def __init__(self, name: str, endpoint: str, ratio: float | None) -> None:
        self.name = name
        self.exporter = Metered(endpoint) if ratio is not None else None
        self.provider: TracerProvider | None = None
        if self.exporter is not None and ratio is not None:
            # As tracing.setup builds one: parent-based ratio sampling, batched OTLP/HTTP.
            self.provider = TracerProvider(
                sampler=ParentBased(TraceIdRatioBased(ratio)),
                resource=Resource.create({SERVICE_NAME: "oneflow-bench"}),
                shutdown_on_exit=False,
            )
            self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.blocks: list[float] = []  # microseconds of event loop CPU per request, per block
        self.exported = 0.0  # microseconds of export thread CPU per request, over the run

    def export_cpu(self) -> float:
        return self.exporter.cpu if self.exporter is not None else 0.0


def measure(modes: list[Mode], key: str, args: argparse.Namespace) -> None:
    request: dict[str, Any] = {"model": DEMO_CHAT_MODEL, "messages": [{"role": "user", "content": "Hello there"}]}
    if args.stream:
        request |= {"stream": True, "stream_options": {"include_usage": True}}
    body = json.dumps(request)
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]
    order = random.Random(14)  # noqa: S311 - an order, not a secret
    proxy = GatewayApp()
    app = build(proxy)

    async def block(count: int) -> dict[str, int]:
        spent = {mode.name: 0 for mode in modes}
        for _ in range(count):
            for mode in order.sample(modes, len(modes)):
                tracing.install(mode.provider)
                started = time.thread_time_ns()
                status = await call(app, body, headers)
                spent[mode.name] += time.thread_time_ns() - started
                if status != 200:
                    raise SystemExit(f"the gateway answered {status}")
        tracing.install(None)
        return spent

    with asyncio.Runner() as runner:
        runner.run(proxy.start())
        runner.run(block(args.requests))  # warm-up
        usage_drain()
        exported = [mode.export_cpu() for mode in modes]
        for _ in range(args.blocks):
            spent = runner.run(block(args.requests))
            usage_drain()  # outside the clocks: keeps the stream and the journal as short as production's
            for mode in modes:
                mode.blocks.append(spent[mode.name] / args.requests / 1000)
        for mode in modes:
            if mode.provider is not None:
                mode.provider.force_flush()
        for mode, before in zip(modes, exported, strict=True):
            mode.exported = (mode.export_cpu() - before) / (args.blocks * args.requests) * 1e6
        runner.run(proxy.stop())


def off_path_cost(repeat: int = 200_000) -> float:
    """Microseconds per request of the tracing calls the /v1 path makes when tracing is off:
    the request's span, an attempt, two Redis phases, their recording checks, the traceparent."""
    tracing.install(None)
    started = time.process_time()
    for _ in range(repeat):
        with tracing.server_span("POST", {}) as span:
            span.is_recording()
            for _phase in range(3):
                with tracing.span("phase") as inner:
                    inner.is_recording()
            tracing.traceparent()
    return (time.process_time() - started) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="rounds per block (a request per mode each)")
    parser.add_argument("--blocks", type=int, default=30, help="measured blocks (after one warm-up)")
    parser.add_argument("--stream", action="store_true", help="streamed chat completions (simulator only)")
    parser.add_argument(
        "--upstream",
        choices=("simulator", "http"),
        default="simulator",
        help="who answers: the in-process simulator, or a provider over HTTP (the collector's process)",
    )
    args = parser.parse_args()
    if args.stream and args.upstream == "http":
        parser.error("--stream needs the simulator")

    call_command("migrate", verbosity=0)
    # The access log still formats a line per request, as in production, but into the void.
    devnull = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        port = int((sink.stdout.readline() if sink.stdout else "").strip())
        endpoint = f"http://127.0.0.1:{port}/v1/traces"
        key = tenant(f"http://127.0.0.1:{port}/v1" if args.upstream == "http" else None)
        ratios = {"off": None, "off, control": None, "on, 10 %": 0.1, "on, 100 %": 1.0}
        modes = [Mode(name, endpoint, ratio) for name, ratio in ratios.items()]
        measure(modes, key, args)
        report(modes, args, sink_stats=_stats(port))
    finally:
        sink.terminate()
        sink.wait()


def _stats(port: int) -> dict[str, int]:
    async def fetch() -> dict[str, int]:
        client = HttpClient()
        try:
            async with client.session().get(f"http://127.0.0.1:{port}/stats") as response:
                stats: dict[str, int] = await response.json()
                return stats
        finally:
            await client.close()

    return asyncio.run(fetch())


def report(modes: list[Mode], args: argparse.Namespace, *, sink_stats: dict[str, int]) -> None:
    backing = "PostgreSQL + Redis" if os.environ.get("REDIS_URL") else "embedded (SQLite, in-process Redis)"
    kind = "streamed" if args.stream else "non-streamed"
    answering = "the simulator" if args.upstream == "simulator" else "a provider over HTTP"
    python = sys.version.split()[0]
    print(f"{args.blocks} blocks x {args.requests} {kind} chat requests per mode answered by {answering},")
    print(f"{backing}, Python {python}")
    print("CPU per request, microseconds: the event loop's (median of blocks), the export thread's, and the")
    print("difference from off, block by block: median (interquartile range), and in % of off")
    print(f"{'mode':<14}{'loop':>8}{'export':>8}{'vs off':>9}{'(range)':>18}{'%':>8}")
    off = modes[0]
    for mode in modes:
        paired = [value - base for value, base in zip(mode.blocks, off.blocks, strict=True)]
        low, median, high = statistics.quantiles(paired, n=4)
        median = statistics.median(paired) + mode.exported
        share = median / statistics.median(off.blocks) * 100
        spread = f"{low + mode.exported:+.0f} .. {high + mode.exported:+.0f}"
        loop = statistics.median(mode.blocks)
        print(f"{mode.name:<14}{loop:>8.0f}{mode.exported:>8.0f}{median:>+9.0f}{spread:>18}{share:>+7.1f}%")
    cost = off_path_cost()
    share = cost / statistics.median(off.blocks) * 100
    print(f"tracing calls on the off path: {cost:.2f} us per request ({share:.2f} % of off)")
    spans, exports, size = sink_stats["spans"], sink_stats["exports"], sink_stats["bytes"]
    print(f"collector received {spans} spans in {exports} exports ({size} bytes)")


if __name__ == "__main__":
    main()
