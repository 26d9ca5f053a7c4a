"""Server-sent events: reading an upstream's stream and writing ours."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from oneflow.lib import json


@dataclass(frozen=True)
class Event:
    event: str
    data: str


async def read_events(lines: AsyncIterable[bytes]) -> AsyncIterator[Event]:
    """Events from a byte stream split into lines (aiohttp's ``response.content``).

    Follows the SSE rules the providers rely on: ``event:`` names the next
    event, ``data:`` lines join with newlines, a blank line dispatches, lines
    starting with ``:`` are comments (keep-alives).
    """
    name = ""
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield Event(name or "message", "\n".join(data))
            name, data = "", []
        elif line.startswith(":"):
            continue
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
    if data:
        yield Event(name or "message", "\n".join(data))


DONE = b"data: [DONE]\n\n"


def data_frame(payload: object) -> bytes:
    return b"data: " + json.dumps(payload) + b"\n\n"


def named_frame(event: str, payload: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + json.dumps(payload) + b"\n\n"
