"""Slow clients against a live uvicorn: a body dripped slower than
BODY_READ_TIMEOUT_SECONDS gets 408 and loses its connection; a slow body within
it is served; keep-alive still works for everyone else."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from tests.conftest import LiveAsgiServer

DEADLINE = 1.0
DRIP_EVERY = 0.2


@pytest.fixture
def server(transactional_db: None) -> Iterator[LiveAsgiServer]:
    from oneflow.asgi import build

    # build() runs inside the override: the middleware takes its deadline when built.
    with (
        override_settings(BODY_READ_TIMEOUT_SECONDS=DEADLINE, ONEFLOW_EMBEDDED_BEAT=False),
        LiveAsgiServer(build()) as live,
    ):
        yield live


def open_request(server: LiveAsgiServer, path: str, length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}"
    sock.sendall(head.encode() + b"\r\n\r\n")
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; a server that
    keeps it open 10 s (the socket's timeout) fails the test with TimeoutError."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def drip_until_answered(sock: socket.socket, data: bytes) -> tuple[int, bytes]:
    """Sends one byte every DRIP_EVERY seconds until the server answers, then
    reads its answer to the end; returns how many bytes were sent, and the answer.
    One thread: no byte is sent once the answer has begun, so none reaches a
    closed socket and resets the connection before the answer is read (a hostile
    dripper may get that reset; fine)."""
    sent = 0
    for byte in data:
        if select.select([sock], [], [], DRIP_EVERY)[0]:
            break
        sock.send(bytes([byte]))
        sent += 1
    return sent, read_until_closed(sock)


def drip_while_open(sock: socket.socket, data: bytes) -> tuple[int, bytes]:
    """Drips ``data`` one byte every DRIP_EVERY seconds, reading whatever comes,
    until the server closes the connection; returns how many bytes were sent,
    and everything received. Bytes that keep coming keep the connection from
    ever being idle: only a deadline on the body can close it before the drip ends."""
    sent, received = 0, b""
    for byte in data:
        try:
            if select.select([sock], [], [], DRIP_EVERY)[0]:
                if not (chunk := sock.recv(65536)):
                    break
                received += chunk
            else:
                sent += sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):  # closed while a byte was on its way
            break
    return sent, received


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/api/auth/token", "openai"), ("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")],
)
def test_a_body_dripped_past_the_deadline_gets_408_and_the_connection_closes(
    server: LiveAsgiServer, path: str, shape: str
) -> None:
    body = b'{"model": "gpt-4o-mini", "messages": []}'
    started = time.monotonic()
    sock = open_request(server, path, len(body))
    try:
        sent, raw = drip_until_answered(sock, body)
    finally:
        sock.close()
    elapsed = time.monotonic() - started

    status, headers, payload = parse(raw)
    assert status == 408
    assert elapsed >= DEADLINE
    assert sent < len(body), "answered at the deadline, not when the drip ended (8 s)"
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(payload)
    if shape == "anthropic":
        assert error["type"] == "error"
        assert error["error"]["type"] == "timeout_error"
        assert error["request_id"] == headers["x-request-id"]
    else:
        assert error["error"]["code"] == "request_timeout"
        assert set(error["error"]) == {"message", "type", "param", "code"}


def test_a_slow_body_within_the_deadline_is_served(server: LiveAsgiServer) -> None:
    body = json.dumps({"email": "nobody@example.com", "password": "wrong password 123"}).encode()
    sock = open_request(server, "/api/auth/token", len(body))
    try:
        # Three pieces over about 0.6 s, under the 1 s deadline.
        for piece in (body[:10], body[10:20], body[20:]):
            time.sleep(0.2)
            sock.sendall(piece)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 401, "read and judged: wrong credentials"
        assert json.loads(response.read())["error"]["type"] == "authentication_error"
    finally:
        sock.close()


def test_an_answer_before_a_dripped_body_closes_the_connection_at_the_deadline(server: LiveAsgiServer) -> None:
    # A declared body over the limit is refused unread. The rest of it is awaited
    # (an honest client gets its 413 instead of a reset) only until the deadline:
    # a drip must not go on, kept alive, with no deadline at all.
    started = time.monotonic()
    sock = open_request(server, "/v1/chat/completions", 20 * 1024 * 1024)
    try:
        sent, raw = drip_while_open(sock, b"x" * 40)
    finally:
        sock.close()
    status, headers, _ = parse(raw)
    assert status == 413
    assert headers["connection"] == "close"
    assert time.monotonic() - started >= DEADLINE
    assert sent < 40, "closed at the deadline, not when the drip ended (8 s)"


def test_connections_stay_alive_for_requests_that_sent_their_body(server: LiveAsgiServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        body = json.dumps({"email": "nobody@example.com", "password": "wrong password 123"})
        sockets = set()
        for method, path, payload in [("GET", "/healthz", None), ("POST", "/api/auth/token", body)] * 2:
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            assert response.getheader("connection") != "close", (method, path)
            sockets.add(id(connection.sock))
        assert len(sockets) == 1, "one socket served all four requests"
    finally:
        connection.close()
