"""The load generator: sends each planned request at its planned time, whatever the server does.

Open loop: a request due while every connection is busy gets a new connection instead of
waiting for one, so a slow server cannot slow the arrivals down, and every latency is
measured from the request's *planned* send time. A server that stalls for a second
therefore shows a second of latency on every request planned during the stall, which a
closed-loop tool (wrk, a fixed pool of connections that each wait for their answer) hides:
it just sends fewer requests, the "coordinated omission" of Gil Tene's talks. ``--closed``
runs that closed-loop way on purpose, for capacity figures and to show the difference.

Raw asyncio protocol on uvloop with httptools' C parser (the same as uvicorn's), about
30 µs of CPU per JSON request: one process keeps a timetable of a few thousand requests
a second. Several processes split one plan (request i goes to process i mod N) and their
records are merged afterwards. Each process writes one .npz of per-request records:

    index    the plan's request number
    sent_at  when the generator sent it (or began to connect for it), seconds after t0
    connect  seconds to open its connection, NaN when it reused one
    ttfb     first body byte (a stream's first token), seconds after the *planned* time
    total    last byte, seconds after the planned time (closed loop: after sent_at)
    status   the HTTP status, or one of the negative codes below
    nbytes   bytes received

    python -m bench.load.generator --plan plan.npz --t0 MONOTONIC --port 18000 --out w0.npz
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import sys
import time
from pathlib import Path
from typing import cast

import httptools
import numpy as np
import orjson
import uvloop

from bench.load import traffic

# Negative statuses: what went wrong when there is no HTTP status to report.
CONNECT_FAILED = -1
TIMED_OUT = -2
CLOSED_EARLY = -3  # the connection ended before the answer did
TRUNCATED = -4  # a 200 stream that ended without "data: [DONE]"
NOT_SENT = -5  # the generator's own connection cap was reached
BAD_RESPONSE = -6
NO_ANSWER = -7  # never finished (the run ended first)
STATUS_NAMES = {
    CONNECT_FAILED: "connect failed",
    TIMED_OUT: "timed out",
    CLOSED_EARLY: "connection closed early",
    TRUNCATED: "stream cut before [DONE]",
    NOT_SENT: "not sent (generator connection cap)",
    BAD_RESPONSE: "unparsable response",
    NO_ANSWER: "no answer by the end",
}
IDLE_SECONDS = 30.0  # a keep-alive connection unused this long is closed (the server's limit is longer)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.slot = -1  # the record being answered, -1 when idle
        self.reference = 0.0  # the monotonic time latencies are measured from
        self.stream = False
        self.status = 0
        self.first = 0.0
        self.nbytes = 0
        self.tail = b""
        self.now = 0.0
        self.idle_since = 0.0

    def send(self, slot: int, reference: float, stream: bool, payload: bytes) -> None:
        self.slot, self.reference, self.stream = slot, reference, stream
        self.status, self.first, self.nbytes, self.tail = 0, 0.0, 0, b""
        if self.transport is None:
            self.client.fail(self, CLOSED_EARLY)
        else:
            self.transport.write(payload)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.now = time.monotonic()
        self.nbytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.client.fail(self, BAD_RESPONSE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client.lost(self)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.first:
            self.first = self.now
            if self.status != 200:
                self.client.sample(self.status, body)
        self.tail = (self.tail + body)[-64:]

    def on_message_complete(self) -> None:
        self.client.complete(self)


class Records:
    """Per-request records, preallocated so an hour's run does not grow Python objects."""

    def __init__(self, size: int) -> None:
        self.index = np.full(size, -1, np.int32)
        self.sent_at = np.full(size, np.nan)
        self.ttfb = np.full(size, np.nan, np.float32)
        self.total = np.full(size, np.nan, np.float32)
        self.status = np.full(size, NO_ANSWER, np.int16)
        self.nbytes = np.zeros(size, np.int32)
        self.connect = np.full(size, np.nan, np.float32)  # seconds to connect; NaN: a kept-alive connection
        self.used = 0

    def save(self, path: Path) -> None:
        n = self.used
        np.savez(
            path,
            index=self.index[:n],
            sent_at=self.sent_at[:n],
            ttfb=self.ttfb[:n],
            total=self.total[:n],
            status=self.status[:n],
            nbytes=self.nbytes[:n],
            connect=self.connect[:n],
        )


class Client:
    def __init__(self, args: argparse.Namespace, plan: traffic.Plan, records: Records) -> None:
        self.args = args
        self.plan = plan
        self.records = records
        self.t0: float = args.t0
        self.head = (
            f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"Authorization: Bearer {os.environ.get('BENCH_KEY', 'none')}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.idle: list[Connection] = []
        self.busy: set[Connection] = set()
        self.opening = 0
        self.opened = 0
        self.max_open = 0
        self.samples: dict[int, list[str]] = {}  # a few answers of each failing status, for the report
        self.closed_until = 0.0  # closed loop: send again on each answer until then
        self.next_request = 0  # closed loop: the next request number
        self.sending = True  # False once every request has been sent
        self.settled = asyncio.Event()  # set when nothing is being sent or answered any more
        self.loop = asyncio.get_running_loop()

    # --- sending
    def payload(self, plan_index: int, request_id: int) -> bytes:
        body = traffic.body(self.plan, plan_index, request_id)
        return self.head + str(len(body)).encode() + b"\r\n\r\n" + body

    def fire(self, slot: int, plan_index: int, reference: float, now: float) -> None:
        records = self.records
        records.index[slot] = plan_index
        records.sent_at[slot] = now - self.t0
        stream = bool(self.plan.stream[plan_index])
        payload = self.payload(plan_index, plan_index)
        if self.idle:
            connection = self.idle.pop()
            self.busy.add(connection)
            connection.send(slot, reference, stream, payload)
        elif len(self.busy) + self.opening >= self.args.max_connections:
            records.status[slot] = NOT_SENT
        else:
            self.opening += 1
            self.loop.create_task(self._connect_and_send(slot, reference, stream, payload))

    async def _connect_and_send(self, slot: int, reference: float, stream: bool, payload: bytes) -> None:
        try:
            _, connection = await self.loop.create_connection(lambda: Connection(self), self.args.host, self.args.port)
        except OSError:
            self.records.status[slot] = CONNECT_FAILED
            self.records.total[slot] = time.monotonic() - reference
            self._check_settled()
            return
        finally:
            self.opening -= 1
        self.opened += 1
        self.busy.add(connection)
        self.max_open = max(self.max_open, len(self.busy) + len(self.idle))
        # How long the server took to accept: a full accept queue shows here first.
        self.records.connect[slot] = time.monotonic() - self.t0 - self.records.sent_at[slot]
        connection.send(slot, reference, stream, payload)

    # --- answers
    def sample(self, status: int, body: bytes) -> None:
        kept = self.samples.setdefault(status, [])
        text = body[:300].decode(errors="replace")
        if len(kept) < 3 and text not in kept:
            kept.append(text)

    def complete(self, connection: Connection) -> None:
        slot, records = connection.slot, self.records
        status = connection.status
        if status == 200 and connection.stream and b"[DONE]" not in connection.tail:
            status = TRUNCATED
        records.status[slot] = status
        records.total[slot] = connection.now - connection.reference
        if connection.first:
            records.ttfb[slot] = connection.first - connection.reference
        records.nbytes[slot] = connection.nbytes
        connection.slot = -1
        self.busy.discard(connection)
        if connection.parser.should_keep_alive() and connection.transport is not None:
            connection.idle_since = connection.now
            self.idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()
        if self.closed_until:
            self._closed_next(connection.now)
        self._check_settled()

    def _check_settled(self) -> None:
        if not self.sending and not self.busy and not self.opening:
            self.settled.set()

    async def _settle(self) -> None:
        """Waits for the answers still due, at most the request timeout."""
        self.sending = False
        self._check_settled()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settled.wait(), self.args.timeout + 1)

    def fail(self, connection: Connection, status: int) -> None:
        """Ends the connection's request with ``status`` and drops the connection."""
        answering = connection.slot >= 0
        if answering:
            self.records.status[connection.slot] = status
            self.records.total[connection.slot] = time.monotonic() - connection.reference
            connection.slot = -1
        self.busy.discard(connection)
        if connection.transport is not None:
            connection.transport.abort()
        if answering and self.closed_until:
            self._closed_next(time.monotonic())
        self._check_settled()

    def lost(self, connection: Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        self.fail(connection, CLOSED_EARLY)

    async def sweep(self) -> None:
        """Times out answers that take too long and closes long-idle connections."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for connection in [c for c in self.busy if now - c.reference > self.args.timeout]:
                self.fail(connection, TIMED_OUT)
            while self.idle and now - self.idle[0].idle_since > IDLE_SECONDS:
                stale = self.idle.pop(0)
                if stale.transport is not None:
                    stale.transport.close()

    # --- the two ways of sending
    async def run_open(self, mine: np.ndarray) -> None:
        """Sends the plan's requests ``mine`` at their times."""
        times = (self.t0 + self.plan.send_at[mine]).tolist()
        indices = mine.tolist()
        n = len(times)
        j = 0
        while j < n:
            now = time.monotonic()
            while j < n and times[j] <= now:
                self.fire(j, indices[j], times[j], now)
                j += 1
            if j < n:
                # uvloop's timers tick in whole milliseconds: a shorter sleep would spin.
                await asyncio.sleep(max(0.001, times[j] - time.monotonic()))
        self.records.used = n
        await self._settle()

    async def run_closed(self, connections: int, duration: float, warmup: float) -> None:
        """``connections`` connections, each sending its next request when the last is answered,
        from ``warmup`` seconds before t0 (those requests are recorded, and left out later)."""
        await asyncio.sleep(max(0.0, self.t0 - warmup - time.monotonic()))
        self.closed_until = self.t0 + duration
        for _ in range(connections):
            self._closed_next(time.monotonic())
        await asyncio.sleep(max(0.0, self.closed_until - time.monotonic()))
        await self._settle()

    def _closed_next(self, now: float) -> None:
        records = self.records
        if now >= self.closed_until or records.used >= len(records.index):
            return
        slot = records.used
        records.used += 1
        request = self.next_request
        self.next_request += 1
        plan_index = request % len(self.plan)
        # A new request id per request, so the upstream's error draw sees each one afresh.
        records.index[slot] = plan_index
        records.sent_at[slot] = now - self.t0
        stream = bool(self.plan.stream[plan_index])
        payload = self.payload(plan_index, request)
        if self.idle:
            connection = self.idle.pop()
            self.busy.add(connection)
            connection.send(slot, now, stream, payload)
        else:
            self.opening += 1
            self.loop.create_task(self._connect_and_send(slot, now, stream, payload))


async def generate(args: argparse.Namespace) -> dict[str, object]:
    plan = traffic.Plan.load(args.plan)
    if args.closed:
        records = Records(max(100_000, int((args.duration + args.warmup) * 20_000)))
    else:
        mine = np.arange(args.worker, len(plan), args.workers)
        records = Records(len(mine))
    client = Client(args, plan, records)
    sweeper = asyncio.get_running_loop().create_task(client.sweep())
    gc.collect()
    gc.freeze()  # everything built so far lives for the whole run: keep the collector off it
    started = resource.getrusage(resource.RUSAGE_SELF)
    if args.closed:
        await client.run_closed(args.closed, args.duration, args.warmup)
    else:
        await client.run_open(mine)
    for connection in list(client.busy):
        client.fail(connection, NO_ANSWER)
    for connection in client.idle:
        if connection.transport is not None:
            connection.transport.close()
    sweeper.cancel()
    ended = resource.getrusage(resource.RUSAGE_SELF)
    records.save(args.out)
    return {
        "worker": args.worker,
        "requests": records.used,
        "cpu_s": round(ended.ru_utime + ended.ru_stime - started.ru_utime - started.ru_stime, 3),
        "connections_opened": client.opened,
        "max_connections": client.max_open,
        "peak_rss_mb": round(ended.ru_maxrss / 1024, 1),
        "error_samples": {str(status): texts for status, texts in client.samples.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--t0", type=float, required=True, help="time.monotonic() of the measured start")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--max-connections", type=int, default=8000)
    parser.add_argument("--closed", type=int, default=0, help="closed loop with this many connections")
    parser.add_argument("--duration", type=float, default=10.0, help="closed loop: seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="closed loop: seconds before t0")
    args = parser.parse_args(argv)
    summary = uvloop.run(generate(args))
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")


if __name__ == "__main__":
    main()
