"""Forwarding a stream to the client, and cancelling upstream when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from gateway import protocol
from gateway.call import Call
from gateway.settlement import finish, settle_stream
from providers.adapters import UpstreamError


async def _watch_disconnect(call: Call, task: asyncio.Task[Any]) -> None:
    while True:
        message = await call.request.receive()
        if message["type"] == "http.disconnect":
            call.client_disconnected = True
            task.cancel()
            return


T = TypeVar("T")


async def forward(
    call: Call,
    first: T,
    chunks: AsyncIterator[T],
    *,
    account: Callable[[Call, T], None],
    render: Callable[[T], list[bytes]],
    closing: Callable[[], list[bytes]],
    failing: Callable[[UpstreamError], list[bytes]],
) -> None:
    """Streams chunks to the client as rendered frames until the upstream ends.

    ``account`` notes each chunk's usage and generated text on the call before
    ``render`` turns it into the client's frames; ``closing`` frames follow the
    recording of the call, so the client's last byte leaves after it.

    If the client disconnects, the task is cancelled where it waits for the
    next chunk: the adapter's response context closes the upstream connection
    at once, and the call is billed for what was generated so far.
    """
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - always inside a task
    watcher = asyncio.create_task(_watch_disconnect(call, task))
    try:
        chunk: T | None = first
        while chunk is not None:
            account(call, chunk)
            for frame in render(chunk):
                await protocol.send_chunk(call.request, frame)
            chunk = await anext(chunks, None)
        settle_stream(call)
        await finish(call)
        for frame in closing():
            await protocol.send_chunk(call.request, frame)
    except UpstreamError as error:
        # After the first byte there is no failing over: say so, never finish cleanly.
        call.status_code, call.error_type = error.status, error.kind.value
        settle_stream(call)
        await finish(call)
        for frame in failing(error):
            await protocol.send_chunk(call.request, frame)
    except asyncio.CancelledError:
        if not call.client_disconnected:
            raise
        task.uncancel()
        call.status_code, call.error_type = 499, "client_disconnected"
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await chunks.aclose()  # type: ignore[attr-defined]
        settle_stream(call)
    if not call.client_disconnected:
        await protocol.end_stream(call.request)
