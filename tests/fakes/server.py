"""The fake upstream server: one aiohttp application speaking the OpenAI (and Azure), Anthropic and
Gemini protocols, on 127.0.0.1 in a daemon thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Sequence
from types import TracebackType

from aiohttp import web

from tests.fakes import anthropic_api, gemini_api, openai_api
from tests.fakes.common import STATE, Behave, RecordedRequest, UpstreamState, json_response, record

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")


async def unknown_path(request: web.Request) -> web.StreamResponse:
    """Recorded (so tests see a wrong URL) but consumes no scripted behaviour."""
    await record(request)
    error = {
        "message": f"Invalid URL ({request.method} {request.path})",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    return json_response({"error": error}, status=404)


def build_app(state: UpstreamState) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = state
    app.add_routes([*openai_api.ROUTES, *anthropic_api.ROUTES, *gemini_api.ROUTES])
    app.router.add_route("*", "/{tail:.*}", unknown_path)
    return app


class FakeUpstream:
    """``with FakeUpstream() as up:`` serves at ``up.url`` until the block ends.

    ``api_key``: when set, requests must carry exactly this key (else each protocol's 401/400);
    when None any non-empty key is accepted. ``models``: what ``GET /v1/models`` lists.
    ``app`` builds the application served (the fake providers; ``tests.fakes.tap`` builds another).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        shutdown_timeout: float = 0.25,
        app: Callable[[UpstreamState], web.Application] = build_app,
    ) -> None:
        self.state = UpstreamState(api_key=api_key, models=models)
        self._app = app
        self.port = 0
        self._shutdown_timeout = shutdown_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=self._serve, args=(loop, sock, ready), name=f"fake-upstream-{sock.getsockname()[1]}", daemon=True
        )
        self._loop, self._thread = loop, thread
        self.port = sock.getsockname()[1]
        thread.start()
        if not ready.wait(10) or self._startup_error is not None:
            self.stop()
            raise RuntimeError("FakeUpstream did not start") from self._startup_error
        return self

    def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(
            self._app(self.state),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
        )
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, sock).start())
        except BaseException as exc:
            self._startup_error = exc
            with contextlib.suppress(Exception):
                loop.run_until_complete(runner.cleanup())
            sock.close()
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=self._shutdown_timeout + 10)
        if thread.is_alive():
            raise RuntimeError("FakeUpstream thread did not stop")
        self._loop = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # --- scripting and inspection -------------------------------------------------------------

    def script(self, *behaviours: Behave) -> None:
        """Queue behaviours, consumed one per request (FIFO, any endpoint); then normal success."""
        self.state.script(behaviours)

    @property
    def pending(self) -> int:
        """Scripted behaviours not consumed yet."""
        return self.state.pending()

    @property
    def abandoned_streams(self) -> int:
        """Streams whose client closed the connection before the last frame."""
        return self.state.abandoned_streams()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        return self.state.requests()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Blocks until at least ``count`` requests arrived (TimeoutError otherwise)."""
        return self.state.wait_for(count, timeout)

    def reset(self) -> None:
        """Forget recorded requests and unconsumed behaviours."""
        self.state.reset()
