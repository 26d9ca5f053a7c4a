"""Idempotency-Key on the proxy API: a repeat gets the first answer and is never charged twice."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from typing import Any

import anthropic
import openai
import pytest

from accounts import services as accounts_services
from billing.models import LedgerEntry
from gateway import idempotency
from tests.factories import ApiKeyFactory
from tests.fakes import Behave, FakeUpstream
from tests.gateway.conftest import Gateway, simulator_settings
from tests.gateway.test_adapters import route
from tests.http import Reply, call

MESSAGES: Any = [{"role": "user", "content": "Say hello, once"}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


def sdk(gateway: Gateway, raw_key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=raw_key or gateway.key.raw, max_retries=0)


def post(gateway: Gateway, path: str, body: Any, *, idempotency_key: str | None, raw_key: str | None = None) -> Reply:
    headers = {"Authorization": f"Bearer {raw_key or gateway.key.raw}", "Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call(gateway.server.url, "POST", path, body=payload, headers=headers)


def new_key() -> str:
    return f"idem-{uuid.uuid4()}"


def charges() -> int:
    return LedgerEntry.objects.filter(kind="charge").count()


def test_it_replays_a_completion_without_calling_upstream_or_charging_again(gateway: Gateway) -> None:
    key = new_key()
    create = sdk(gateway).chat.completions.with_raw_response.create

    first = create(**CHAT, extra_headers={"Idempotency-Key": key})
    second = create(**CHAT, extra_headers={"Idempotency-Key": key})

    assert second.http_response.content == first.http_response.content
    assert second.parse().id == first.parse().id
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["x-oneflow-cost"] == first.headers["x-oneflow-cost"]
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    [event] = gateway.events()
    assert event.request_id == first.headers["x-request-id"]
    assert charges() == 1


def test_it_replays_a_stream_as_the_same_sse_bytes(gateway: Gateway) -> None:
    key = new_key()

    first = post(gateway, "/v1/chat/completions", STREAM, idempotency_key=key)
    second = post(gateway, "/v1/chat/completions", STREAM, idempotency_key=key)
    # The SDK serializes the body its own way: another request, so another key.
    sdk_key = new_key()
    streamed = [list(sdk(gateway).chat.completions.create(**STREAM, extra_headers={"Idempotency-Key": sdk_key}))]
    streamed.append(list(sdk(gateway).chat.completions.create(**STREAM, extra_headers={"Idempotency-Key": sdk_key})))

    assert first.status == second.status == 200
    assert first.body.endswith(b"data: [DONE]\n\n")
    assert second.body == first.body
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.headers["idempotent-replayed"] == "true"
    assert [c.model_dump() for c in streamed[1]] == [c.model_dump() for c in streamed[0]]
    assert len({chunk.id for chunk in streamed[1]}) == 1
    assert streamed[1][-1].usage is not None
    assert len(gateway.events()) == 2
    assert charges() == 2


def test_an_embedding_is_replayed_too(gateway: Gateway) -> None:
    key = new_key()
    body = {"model": "text-embedding-3-small", "input": "hello"}

    first = post(gateway, "/v1/embeddings", body, idempotency_key=key)
    second = post(gateway, "/v1/embeddings", body, idempotency_key=key)

    assert (first.status, second.status) == (200, 200)
    assert second.body == first.body
    assert second.headers["idempotent-replayed"] == "true"
    assert len(gateway.events()) == 1


def test_without_the_header_every_request_runs(gateway: Gateway) -> None:
    first = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=None)
    second = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=None)

    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers
    assert len(gateway.events()) == 2
    assert charges() == 2


def test_a_duplicate_while_the_first_runs_gets_409_in_use(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, "openai")
    upstream.script(Behave(delay=1.5))
    create = sdk(gateway).chat.completions.with_raw_response.create
    arguments: Any = {"model": "smart", "messages": MESSAGES, "extra_headers": {"Idempotency-Key": new_key()}}
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(create(**arguments)))
    first.start()
    upstream.wait_for_requests(1)

    with pytest.raises(openai.ConflictError) as in_use:
        create(**arguments)
    first.join(timeout=10)
    replay = create(**arguments)

    assert in_use.value.code == "idempotency_key_in_use"
    assert in_use.value.response.headers["retry-after"] == "1"
    [answer] = answers
    assert replay.http_response.content == answer.http_response.content
    assert replay.headers["idempotent-replayed"] == "true"
    assert len(upstream.requests) == 1
    assert len(gateway.events()) == 1


def test_the_same_key_on_another_request_is_422(gateway: Gateway) -> None:
    key = new_key()
    assert post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key).status == 200

    with pytest.raises(openai.UnprocessableEntityError) as reused:
        sdk(gateway).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Something else"}],
            extra_headers={"Idempotency-Key": key},
        )
    other_path = post(gateway, "/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}, idempotency_key=key)

    assert reused.value.code == "idempotency_key_reused"
    assert reused.value.type == "invalid_request_error"
    assert other_path.status == 422
    assert other_path.json()["error"]["code"] == "idempotency_key_reused"
    assert len(gateway.events()) == 1


def test_the_same_key_under_other_api_keys_does_not_collide(gateway: Gateway) -> None:
    organization = gateway.key.key.organization
    other = ApiKeyFactory.create(organization=organization)
    key = new_key()

    mine = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key)
    theirs = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key, raw_key=other.raw)

    assert (mine.status, theirs.status) == (200, 200)
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert len(gateway.events()) == 2


def test_a_forged_key_with_a_known_prefix_never_sees_the_stored_answer(gateway: Gateway) -> None:
    key = new_key()
    assert post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key).status == 200
    forged = gateway.key.raw[:-32] + "x" * 32

    reply = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key, raw_key=forged)

    assert reply.status == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"


def test_a_failed_first_attempt_lets_the_retry_run_again(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, "openai")
    upstream.script(*[Behave(status=500, message="upstream broke")] * 5)
    key = new_key()
    body = {"model": "smart", "messages": MESSAGES}

    failed = post(gateway, "/v1/chat/completions", body, idempotency_key=key)
    upstream.reset()
    retried = post(gateway, "/v1/chat/completions", body, idempotency_key=key)

    assert failed.status >= 500
    assert retried.status == 200
    assert "idempotent-replayed" not in retried.headers
    assert len(upstream.requests) == 1
    assert [event.status_code for event in gateway.events()] == [failed.status, 200]
    assert charges() == 1


def test_the_clients_own_4xx_is_replayed(gateway: Gateway) -> None:
    key = new_key()
    body = {"model": "gpt-4o-mini", "messages": []}

    first = post(gateway, "/v1/chat/completions", body, idempotency_key=key)
    second = post(gateway, "/v1/chat/completions", body, idempotency_key=key)

    assert (first.status, second.status) == (400, 400)
    assert second.body == first.body
    assert second.headers["idempotent-replayed"] == "true"


def test_a_client_that_leaves_mid_stream_releases_the_key(gateway: Gateway) -> None:
    simulator_settings(reply_words=40, tokens_per_second=50)
    key = new_key()
    body = json.dumps(STREAM).encode()
    host, port = gateway.server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {gateway.key.raw}\r\nIdempotency-Key: {key}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while received.count(b"data: ") < 3:
            received += sock.recv(4096)

    deadline = time.monotonic() + 10
    retry = post(gateway, "/v1/chat/completions", STREAM, idempotency_key=key)
    while retry.status == 409 and time.monotonic() < deadline:
        time.sleep(0.1)
        retry = post(gateway, "/v1/chat/completions", STREAM, idempotency_key=key)

    assert retry.status == 200
    assert "idempotent-replayed" not in retry.headers
    assert retry.body.endswith(b"data: [DONE]\n\n")
    assert [event.client_disconnected for event in gateway.events()] == [True, False]


def test_an_answer_over_the_size_cap_is_not_stored_and_runs_again(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "MAX_STORED_BYTES", 100)
    key = new_key()

    first = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key)
    second = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key)

    assert len(first.body) > 100
    assert (first.status, second.status) == (200, 200)
    assert "idempotent-replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]
    assert len(gateway.events()) == 2


@pytest.mark.parametrize("value", ["", "k" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_refused_with_400(gateway: Gateway, value: str) -> None:
    reply = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=value)

    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_idempotency_key"
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert gateway.events() == []


def test_the_longest_key_is_accepted(gateway: Gateway) -> None:
    key = "k" * 254 + "!"
    first = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key)
    second = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key)
    assert (first.status, second.headers["idempotent-replayed"]) == (200, "true")


def messages_client(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.server.url, api_key=gateway.key.raw, max_retries=0)


def test_messages_are_replayed_with_a_request_id_of_their_own(gateway: Gateway) -> None:
    key = new_key()
    create = messages_client(gateway).messages.with_raw_response.create
    arguments: Any = {"model": "gpt-4o-mini", "max_tokens": 32, "messages": MESSAGES}

    first = create(**arguments, extra_headers={"Idempotency-Key": key})
    second = create(**arguments, extra_headers={"Idempotency-Key": key})

    assert second.http_response.content == first.http_response.content
    assert second.parse().id == first.parse().id
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["request-id"] == second.headers["x-request-id"] != first.headers["request-id"]
    assert len(gateway.events()) == 1


def test_messages_get_anthropic_shaped_errors(gateway: Gateway) -> None:
    client = messages_client(gateway)
    arguments: Any = {"model": "gpt-4o-mini", "max_tokens": 32, "messages": MESSAGES}
    key = new_key()
    client.messages.create(**arguments, extra_headers={"Idempotency-Key": key})

    with pytest.raises(anthropic.BadRequestError) as malformed:
        client.messages.create(**arguments, extra_headers={"Idempotency-Key": "k" * 256})
    with pytest.raises(anthropic.UnprocessableEntityError) as reused:
        client.messages.create(**{**arguments, "max_tokens": 33}, extra_headers={"Idempotency-Key": key})

    for error in (malformed.value, reused.value):
        body: Any = error.body
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert "Idempotency-Key" in body["error"]["message"]
        assert error.response.headers["request-id"] == error.response.headers["x-request-id"]


def test_a_key_revoked_since_its_first_answer_gets_no_replay(gateway: Gateway) -> None:
    key = new_key()
    assert post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key).status == 200
    accounts_services.api_key_revoke(key=gateway.key.key)

    repeat = post(gateway, "/v1/chat/completions", CHAT, idempotency_key=key)

    assert repeat.status == 401
    assert "idempotent-replayed" not in repeat.headers
    assert repeat.json()["error"]["code"] == "invalid_api_key"
