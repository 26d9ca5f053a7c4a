"""One call of the gateway's own ASGI app from inside the web process.

The dashboard's playground sends the request an API client would send to
gateway.asgi.application directly: the same authentication, limits, credit
hold, charge, usage event and request log as over the network, without a
network hop, and the key it carries never leaves the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from gateway import asgi
from gateway.protocol import Message
from oneflow.lib import json
from oneflow.lib.asgi import new_request_id
from oneflow.lib.jsonlog import request_id_var

logger = logging.getLogger(__name__)

# Calls whose browser left: the gateway still cancels upstream and records
# them. Held here because the event loop keeps only weak references to tasks.
_running: set[asyncio.Task[None]] = set()


class GatewayCall:
    """``await GatewayCall(...).start()`` runs the request and returns once the
    gateway has answered with a status; ``chunks()`` then yields the body as
    the gateway sends it.

    The gateway watches for the client leaving (to cancel the upstream call
    and bill only what was generated); ``leave()`` is how it learns that the
    browser behind this call went away.
    """

    def __init__(self, *, path: str, payload: dict[str, Any], api_key: str) -> None:
        self.request_id = new_request_id()
        self.body = json.dumps(payload)
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.body)).encode()),
                (b"authorization", f"Bearer {api_key}".encode()),
                (b"user-agent", b"OneFlow-Playground"),
                (b"x-request-id", self.request_id.encode()),
            ],
            "client": None,
            "server": None,
        }
        self.status = 0
        self.headers: dict[str, str] = {}
        self._messages: asyncio.Queue[Message | None] = asyncio.Queue()
        self._body_sent = False
        self._ended = False
        self._gone = asyncio.Event()

    # --- The ASGI side: what the gateway sees -------------------------------------------

    async def _receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        await self._messages.put(message)

    async def _run(self) -> None:
        request_id_var.set(self.request_id)  # this task's own context: the gateway's logs carry its id
        # A gateway of the call's own: the web worker's belongs to its /v1 traffic
        # and its event loop, which a Django view need not share.
        app = asgi.GatewayApp()
        try:
            await app.start()
            await app(self.scope, self._receive, self._send)
        except Exception:
            logger.exception("playground gateway call failed")
        finally:
            await self._messages.put(None)
            await app.stop()

    # --- The dashboard side --------------------------------------------------------------

    async def start(self) -> GatewayCall:
        task = asyncio.create_task(self._run())
        _running.add(task)
        task.add_done_callback(_running.discard)
        try:
            message = await self._messages.get()
        except BaseException:
            self.leave()
            raise
        if message is None or message["type"] != "http.response.start":
            raise RuntimeError("the gateway ended without an answer")
        self.status = int(message["status"])
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
        return self

    @property
    def is_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a consumer that stops early counts as the client leaving."""
        try:
            while not self._ended:
                message = await self._messages.get()
                if message is None:
                    self._ended = True
                elif message["type"] == "http.response.body":
                    self._ended = not message.get("more_body", False)
                    if message.get("body"):
                        yield message["body"]
        finally:
            if not self._ended:
                self.leave()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def leave(self) -> None:
        self._gone.set()
