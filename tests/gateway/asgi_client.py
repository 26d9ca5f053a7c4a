"""OneFlow's real ASGI application called in-process, without a socket.

Hundreds of requests a second instead of tens, so property tests can send
many bodies through the whole gateway (authentication, holds, the simulator).
One event loop lives as long as the client, and the application's lifespan
runs on it as a server would run it: the gateway opened at startup (Redis and
HTTP clients, the usage journal) serves every request and is closed at the end.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from django.test import override_settings

from accounts import services as accounts_services
from billing.services import credits_grant
from providers.services import catalog_seed_demo
from tests.gateway.conftest import simulator_settings
from tests.http import Reply


class Answer(Reply):
    @property
    def frames(self) -> list[str]:
        """The ``data:`` payloads of an event stream, in order."""
        lines = self.body.decode().splitlines()
        return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


class Lifespan:
    """Drives an ASGI app's lifespan protocol, as uvicorn does."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.outbox.get()
        assert answer["type"] == "lifespan.startup.complete", answer

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        answer = await self.outbox.get()
        assert answer["type"] == "lifespan.shutdown.complete", answer
        assert self.task is not None
        await self.task


class AsgiClient:
    def __init__(self, key: str) -> None:
        from oneflow.asgi import build

        self.app = build()
        self.key = key
        self.runner = asyncio.Runner()
        self.lifespan = Lifespan(self.app)
        with override_settings(ONEFLOW_EMBEDDED_BEAT=False):  # tests drain usage themselves
            self.runner.run(self.lifespan.startup())

    def post(self, path: str, body: bytes, *, headers: dict[str, str] | None = None) -> Answer:
        return self.runner.run(self._call("POST", path, body, headers or {}))

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> Answer:
        return self.runner.run(self._call("GET", path, b"", headers or {}))

    def close(self) -> None:
        self.runner.run(self.lifespan.shutdown())
        self.runner.close()

    async def _call(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        sent = {"authorization": f"Bearer {self.key}", "content-type": "application/json", **headers}
        return await call_app(self.app, method, path, body, sent)


async def call_app(app: Any, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One request through the ASGI ``app`` in-process, the body sent whole."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    done = asyncio.Event()
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await done.wait()  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    done.set()
    headers_out = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    return Answer(start["status"], headers_out, b"".join(chunks))


def tenant_key() -> str:
    """The demo catalog on an instant simulator, and a funded organization's key."""
    catalog_seed_demo()
    simulator_settings()
    alice = accounts_services.user_create(email="alice@example.com", password="correct horse battery staple")
    acme = accounts_services.organization_create(name="Acme", owner=alice)
    key = accounts_services.api_key_create(organization=acme, name="fuzz", created_by=alice)
    credits_grant(organization=acme, amount=Decimal(1_000_000), idempotency_key="fuzz-credits")
    return key.raw
