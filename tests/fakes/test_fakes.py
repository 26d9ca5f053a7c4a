"""The fake upstreams speak the providers' wire protocols: raw HTTP checks and the official SDKs."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.fakes import DEFAULT_REPLY, JSON_REPLY, Behave, FakeUpstream, split_reply
from tests.fakes import anthropic_api as anth
from tests.fakes import gemini_api as gem
from tests.fakes import openai_api as oai

OPENAI_AUTH = {"Authorization": "Bearer sk-upstream"}
ANTHROPIC_AUTH = {"x-api-key": "sk-upstream", "anthropic-version": "2023-06-01"}
GEMINI_AUTH = {"x-goog-api-key": "sk-upstream"}
CHAT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
}
MESSAGES: dict[str, Any] = {
    "model": "claude-x",
    "max_tokens": 100,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Say hi"}],
}
CONTENTS: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "contents": [{"role": "user", "parts": [{"text": "Say hi"}]}],
}
GEMINI_PATH = "/v1beta/models/gemini-2.0-flash"
TOOL: dict[str, Any] = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key="sk-upstream") as upstream:
        yield upstream


@pytest.fixture
def up(server: FakeUpstream) -> FakeUpstream:
    server.reset()
    return server


def call(
    up: FakeUpstream, path: str, body: object = None, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each SSE event; accepts \\n\\n and \\r\\n\\r\\n separators."""
    found: list[tuple[str | None, str]] = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        found.append((name, "\n".join(data)))
    return found


def chunks(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in events(raw) if data != "[DONE]"]


# --- OpenAI -----------------------------------------------------------------------------------


def test_openai_chat_json(up: FakeUpstream) -> None:
    status, headers, raw = call(up, "/v1/chat/completions", CHAT, OPENAI_AUTH)
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"]
    body = json.loads(raw)
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["system_fingerprint"]
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": DEFAULT_REPLY, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    prompt = oai.expected_prompt_tokens(CHAT)
    assert prompt == 3 + 2 + 3 + 2
    assert body["usage"]["prompt_tokens"] == prompt
    assert body["usage"]["completion_tokens"] == oai.expected_completion_tokens(DEFAULT_REPLY) == 5
    assert body["usage"]["total_tokens"] == prompt + 5
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    [recorded] = up.requests
    assert (recorded.method, recorded.path, recorded.json) == ("POST", "/v1/chat/completions", CHAT)
    assert recorded.headers["authorization"] == "Bearer sk-upstream"


def test_openai_stream_with_and_without_usage(up: FakeUpstream) -> None:
    status, headers, raw = call(
        up, "/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}, OPENAI_AUTH
    )
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert raw.endswith(b"data: [DONE]\n\n")
    parsed = chunks(raw)
    assert all(chunk["object"] == "chat.completion.chunk" and "usage" in chunk for chunk in parsed)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed[:-1]) == DEFAULT_REPLY
    assert [c["choices"][0]["finish_reason"] for c in parsed[:-1]] == [None] * 6 + ["stop"]
    assert all(chunk["usage"] is None for chunk in parsed[:-1])
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["completion_tokens"] == 5
    assert parsed[-1]["usage"]["prompt_tokens"] == oai.expected_prompt_tokens(CHAT)

    _, _, raw = call(up, "/v1/chat/completions", {**CHAT, "stream": True}, OPENAI_AUTH)
    assert all("usage" not in chunk for chunk in chunks(raw))
    assert chunks(raw)[-1]["choices"][0]["finish_reason"] == "stop"
    up.script(Behave(no_usage=True))
    _, _, raw = call(
        up, "/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}, OPENAI_AUTH
    )
    assert all(chunk["usage"] is None for chunk in chunks(raw))


def test_openai_tool_calls_json_mode_and_truncation(up: FakeUpstream) -> None:
    up.script(Behave(tool_call=TOOL), Behave(tool_call=TOOL))
    _, _, raw = call(up, "/v1/chat/completions", CHAT, OPENAI_AUTH)
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [tool_call] = choice["message"]["tool_calls"]
    assert tool_call["type"] == "function"
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == TOOL["arguments"]
    assert json.loads(raw)["usage"]["completion_tokens"] == oai.expected_completion_tokens("", TOOL)

    _, _, raw = call(up, "/v1/chat/completions", {**CHAT, "stream": True}, OPENAI_AUTH)
    deltas = [c["choices"][0]["delta"].get("tool_calls") for c in chunks(raw)]
    calls = [d[0] for d in deltas if d]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert len(calls) > 2 and all("id" not in c for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == TOOL["arguments"]
    assert chunks(raw)[-1]["choices"][0]["finish_reason"] == "tool_calls"

    _, _, raw = call(up, "/v1/chat/completions", {**CHAT, "response_format": {"type": "json_object"}}, OPENAI_AUTH)
    assert json.loads(json.loads(raw)["choices"][0]["message"]["content"]) == json.loads(JSON_REPLY)

    _, _, raw = call(up, "/v1/chat/completions", {**CHAT, "max_completion_tokens": 2, "n": 2}, OPENAI_AUTH)
    body = json.loads(raw)
    assert [c["message"]["content"] for c in body["choices"]] == ["Hello from"] * 2
    assert [c["finish_reason"] for c in body["choices"]] == ["length"] * 2
    assert body["usage"]["completion_tokens"] == 4


def test_openai_errors(up: FakeUpstream) -> None:
    up.script(Behave(status=429, headers={"retry-after": "1"}))
    status, headers, raw = call(up, "/v1/chat/completions", CHAT, OPENAI_AUTH)
    assert status == 429
    assert headers["retry-after"] == "1"
    assert json.loads(raw) == {
        "error": {
            "message": "Rate limit reached for requests.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    status, _, raw = call(up, "/v1/chat/completions", CHAT, {"Authorization": "Bearer sk-wrong-key-1234"})
    assert status == 401
    assert json.loads(raw)["error"]["code"] == "invalid_api_key"
    status, _, raw = call(up, "/v1/chat/completions", CHAT)
    assert status == 401
    status, _, raw = call(up, "/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}}, OPENAI_AUTH)
    assert status == 400
    assert json.loads(raw)["error"]["param"] == "stream_options"
    up.script(Behave(malformed=True))
    status, _, raw = call(up, "/v1/chat/completions", CHAT, OPENAI_AUTH)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)
    status, _, raw = call(up, "/v1/nope", {})
    assert status == 404
    assert up.requests[-1].path == "/v1/nope"


def test_cut_after_reset_and_delays(up: FakeUpstream) -> None:
    up.script(Behave(cut_after=2))
    connection = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps({**CHAT, "stream": True}), OPENAI_AUTH)
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    connection.close()
    delivered = chunks(cut.value.partial)
    assert [c["choices"][0]["delta"].get("content") for c in delivered] == ["", "Hello", " from"]
    assert b"[DONE]" not in cut.value.partial

    up.script(Behave(reset=True))
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        call(up, "/v1/chat/completions", CHAT, OPENAI_AUTH)

    up.script(Behave(delay=0.3), Behave(chunk_delay=0.05))
    started = time.monotonic()
    assert call(up, "/v1/chat/completions", CHAT, OPENAI_AUTH)[0] == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    call(up, "/v1/chat/completions", {**CHAT, "stream": True}, OPENAI_AUTH)
    assert time.monotonic() - started >= 0.05 * 7
    assert up.pending == 0
    assert len(up.wait_for_requests(4)) == 4


def test_a_stall_pauses_a_stream_after_its_nth_content_frame(up: FakeUpstream) -> None:
    # A stall far longer than the socket's 10 s timeout: "Hello" arrives only if it comes before it.
    up.script(Behave(stall_after=1, stall=60))
    connection = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps({**CHAT, "stream": True}), OPENAI_AUTH)
    response = connection.getresponse()
    first = response.read1()  # the role chunk and "Hello" are sent at once
    while b"Hello" not in first:
        first += response.read1()
    connection.close()
    assert b" from" not in first

    # A short stall: the stream resumes after it and ends as usual.
    up.script(Behave(stall_after=1, stall=0.4))
    connection = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps({**CHAT, "stream": True}), OPENAI_AUTH)
    response = connection.getresponse()
    started = time.monotonic()
    first = response.read1()
    while b"Hello" not in first:
        first += response.read1()
    rest = response.read()
    connection.close()
    assert time.monotonic() - started >= 0.4
    assert [c["choices"][0]["delta"].get("content") for c in chunks(first + rest) if c["choices"]][1:3] == [
        "Hello",
        " from",
    ]
    assert b"[DONE]" in rest


def test_requests_are_stamped_with_their_arrival(up: FakeUpstream) -> None:
    before = time.monotonic()
    call(up, "/v1/chat/completions", CHAT, OPENAI_AUTH)
    time.sleep(0.1)
    call(up, "/v1/chat/completions", CHAT, OPENAI_AUTH)
    first, second = up.requests
    assert before <= first.at < second.at <= time.monotonic()
    assert second.at - first.at >= 0.1


def test_openai_embeddings_models_and_azure(up: FakeUpstream) -> None:
    request = {"model": "text-embedding-3-small", "input": ["hello world", "bye"], "dimensions": 4}
    _, _, raw = call(up, "/v1/embeddings", request, OPENAI_AUTH)
    body = json.loads(raw)
    assert body["object"] == "list" and body["model"] == "text-embedding-3-small"
    assert [d["embedding"] for d in body["data"]] == [
        oai.expected_embedding("hello world", 4),
        oai.expected_embedding("bye", 4),
    ]
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert (
        body["usage"]
        == {"prompt_tokens": 3, "total_tokens": 3}
        == {"prompt_tokens": oai.expected_embedding_tokens(request), "total_tokens": 3}
    )
    _, _, raw = call(
        up, "/v1/embeddings", {"model": "e", "input": [[1, 2, 3]], "encoding_format": "base64"}, OPENAI_AUTH
    )
    [item] = json.loads(raw)["data"]
    assert list(struct.unpack("<8f", base64.b64decode(item["embedding"]))) == oai.expected_embedding([1, 2, 3])
    assert call(up, "/v1/embeddings", {"model": "e", "input": ""}, OPENAI_AUTH)[0] == 400

    _, _, raw = call(up, "/v1/models", headers=OPENAI_AUTH, method="GET")
    assert json.loads(raw)["object"] == "list"
    assert {"id": "gpt-4o", "object": "model", "created": oai.CREATED, "owned_by": "system"} in json.loads(raw)["data"]
    status, _, raw = call(up, "/v1/models/unknown", headers=OPENAI_AUTH, method="GET")
    assert status == 404 and json.loads(raw)["error"]["code"] == "model_not_found"

    path = "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"
    status, _, raw = call(up, path, {"messages": CHAT["messages"]}, {"api-key": "sk-upstream"})
    assert status == 200
    assert json.loads(raw)["model"] == "my-gpt"
    assert up.requests[-1].query == {"api-version": "2024-10-21"}
    assert up.requests[-1].headers["api-key"] == "sk-upstream"
    assert call(up, path, {"messages": CHAT["messages"]}, {"api-key": "wrong"})[0] == 401


# --- Anthropic --------------------------------------------------------------------------------


def test_anthropic_messages_json_and_errors(up: FakeUpstream) -> None:
    status, headers, raw = call(up, "/v1/messages", MESSAGES, ANTHROPIC_AUTH)
    assert status == 200
    assert headers["request-id"]
    body = json.loads(raw)
    assert body["id"].startswith("msg_")
    assert body["type"] == "message" and body["role"] == "assistant" and body["model"] == "claude-x"
    assert body["content"] == [{"type": "text", "text": DEFAULT_REPLY}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"] == {
        "input_tokens": anth.expected_prompt_tokens(MESSAGES),
        "output_tokens": anth.expected_completion_tokens(DEFAULT_REPLY),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    }
    assert anth.expected_prompt_tokens(MESSAGES) == oai.expected_prompt_tokens(CHAT)

    cases = [
        ({"anthropic-version": "2023-06-01"}, MESSAGES, 401, "authentication_error"),
        ({"x-api-key": "sk-upstream"}, MESSAGES, 400, "invalid_request_error"),
        (ANTHROPIC_AUTH, {k: v for k, v in MESSAGES.items() if k != "max_tokens"}, 400, "invalid_request_error"),
    ]
    for headers, request, expected_status, error_type in cases:
        status, _, raw = call(up, "/v1/messages", request, headers)
        assert status == expected_status
        assert json.loads(raw)["type"] == "error"
        assert json.loads(raw)["error"]["type"] == error_type
    up.script(Behave(status=529))
    status, _, raw = call(
        up, "/v1/messages", MESSAGES, {"Authorization": "Bearer sk-upstream", "anthropic-version": "x"}
    )
    assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"


def test_anthropic_stream_event_order_tool_use_and_errors(up: FakeUpstream) -> None:
    _, headers, raw = call(up, "/v1/messages", {**MESSAGES, "stream": True}, ANTHROPIC_AUTH)
    assert headers["content-type"].startswith("text/event-stream")
    parsed = events(raw)
    names = [name for name, _ in parsed]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(json.loads(data)["type"] == name for name, data in parsed)
    assert json.loads(parsed[0][1])["message"]["usage"]["input_tokens"] == anth.expected_prompt_tokens(MESSAGES)
    assert (
        "".join(json.loads(data)["delta"]["text"] for name, data in parsed if name == "content_block_delta")
        == DEFAULT_REPLY
    )
    assert json.loads(parsed[-2][1]) == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 5},
    }

    up.script(Behave(tool_call=TOOL), Behave(stream_error=True), Behave(cut_after=1))
    _, _, raw = call(up, "/v1/messages", {**MESSAGES, "stream": True}, ANTHROPIC_AUTH)
    payloads = [json.loads(data) for _, data in events(raw)]
    assert payloads[1]["content_block"]["type"] == "tool_use" and payloads[1]["content_block"]["input"] == {}
    fragments = [p["delta"]["partial_json"] for p in payloads if p["type"] == "content_block_delta"]
    assert len(fragments) > 1 and json.loads("".join(fragments)) == TOOL["arguments"]
    assert payloads[-2]["delta"]["stop_reason"] == "tool_use"

    _, _, raw = call(up, "/v1/messages", {**MESSAGES, "stream": True}, ANTHROPIC_AUTH)
    assert events(raw)[-1] == (
        "error",
        json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
    assert [name for name, _ in events(raw)].count("content_block_delta") == 1

    with pytest.raises(http.client.IncompleteRead):
        call(up, "/v1/messages", {**MESSAGES, "stream": True}, ANTHROPIC_AUTH)


# --- Gemini -----------------------------------------------------------------------------------


def test_gemini_generate_content_and_errors(up: FakeUpstream) -> None:
    status, _, raw = call(up, f"{GEMINI_PATH}:generateContent?key=sk-upstream", CONTENTS)
    assert status == 200
    body = json.loads(raw)
    assert body["candidates"] == [
        {"content": {"parts": [{"text": DEFAULT_REPLY}], "role": "model"}, "finishReason": "STOP", "index": 0}
    ]
    prompt = gem.expected_prompt_tokens(CONTENTS)
    assert prompt == oai.expected_prompt_tokens(CHAT)
    assert body["usageMetadata"] == {
        "promptTokenCount": prompt,
        "candidatesTokenCount": 5,
        "totalTokenCount": prompt + 5,
    }
    assert body["modelVersion"] == "gemini-2.0-flash"
    assert up.requests[-1].query == {"key": "sk-upstream"}

    up.script(Behave(tool_call=TOOL))
    _, _, raw = call(up, f"{GEMINI_PATH}:generateContent", CONTENTS, GEMINI_AUTH)
    assert json.loads(raw)["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": TOOL["arguments"]}}
    ]

    status, _, raw = call(up, f"{GEMINI_PATH}:generateContent", CONTENTS)
    assert status == 403 and json.loads(raw)["error"]["status"] == "PERMISSION_DENIED"
    status, _, raw = call(up, f"{GEMINI_PATH}:generateContent?key=wrong", CONTENTS)
    assert status == 400 and json.loads(raw)["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    status, _, raw = call(
        up,
        f"{GEMINI_PATH}:generateContent",
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        GEMINI_AUTH,
    )
    assert status == 400 and json.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
    up.script(Behave(status=429))
    status, _, raw = call(up, f"{GEMINI_PATH}:generateContent", CONTENTS, GEMINI_AUTH)
    assert (status, json.loads(raw)) == (
        429,
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
            }
        },
    )


def test_gemini_streams(up: FakeUpstream) -> None:
    status, headers, raw = call(up, f"{GEMINI_PATH}:streamGenerateContent?alt=sse", CONTENTS, GEMINI_AUTH)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert raw.endswith(b"\r\n\r\n") and b"\n\n" not in raw.replace(b"\r\n\r\n", b"")
    parsed = chunks(raw)
    assert "".join(p["candidates"][0]["content"]["parts"][0]["text"] for p in parsed) == DEFAULT_REPLY
    assert all("finishReason" not in p["candidates"][0] and "usageMetadata" not in p for p in parsed[:-1])
    assert parsed[-1]["candidates"][0]["finishReason"] == "STOP"
    assert parsed[-1]["usageMetadata"]["candidatesTokenCount"] == 5

    _, headers, raw = call(
        up,
        f"{GEMINI_PATH}:streamGenerateContent",
        {**CONTENTS, "generationConfig": {"maxOutputTokens": 3}},
        GEMINI_AUTH,
    )
    array = json.loads(raw)
    assert len(array) == 4 and array[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"

    up.script(Behave(cut_after=3))
    with pytest.raises(http.client.IncompleteRead) as cut:
        call(up, f"{GEMINI_PATH}:streamGenerateContent?alt=sse", CONTENTS, GEMINI_AUTH)
    assert len(chunks(cut.value.partial)) == 3


def test_aiohttp_client_reads_a_gemini_sse_stream_line_by_line(up: FakeUpstream) -> None:
    async def read() -> list[str]:
        async with aiohttp.ClientSession() as session:
            url = f"{up.url}{GEMINI_PATH}:streamGenerateContent?alt=sse"
            async with session.post(url, json=CONTENTS, headers=GEMINI_AUTH) as response:
                return [line.decode().strip() async for line in response.content if line.strip()]

    lines = asyncio.run(read())
    assert len(lines) == len(split_reply(DEFAULT_REPLY)) + 1
    assert all(line.startswith("data: {") for line in lines)


# --- the official SDKs ------------------------------------------------------------------------


def test_openai_sdk_against_the_fake(up: FakeUpstream) -> None:
    with openai.OpenAI(base_url=up.url + "/v1", api_key="sk-upstream", max_retries=0) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"])
        assert completion.choices[0].message.content == DEFAULT_REPLY
        assert completion.usage is not None and completion.usage.completion_tokens == 5
        assert completion._request_id

        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT["messages"], stream=True, stream_options={"include_usage": True}
        )
        received = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == DEFAULT_REPLY
        assert received[-1].usage is not None
        assert received[-1].usage.prompt_tokens == oai.expected_prompt_tokens(CHAT)

        embedding = client.embeddings.create(model="text-embedding-3-small", input="hello world")
        assert up.requests[-1].json["encoding_format"] == "base64"
        assert embedding.data[0].embedding == oai.expected_embedding("hello world")

        up.script(Behave(status=429, headers={"x-should-retry": "false"}), Behave(stream_error=True))
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"])
        assert limited.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.APIError):
            list(client.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"], stream=True))
    assert all(r.headers["authorization"] == "Bearer sk-upstream" for r in up.requests)


def test_anthropic_sdk_against_the_fake(up: FakeUpstream) -> None:
    with anthropic.Anthropic(base_url=up.url, api_key="sk-upstream", max_retries=0) as client:
        message = client.messages.create(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "Say hi"}]
        )
        assert message.content[0].type == "text" and message.content[0].text == DEFAULT_REPLY
        assert message.usage.output_tokens == 5 and message.stop_reason == "end_turn"
        recorded = up.requests[-1]
        assert (
            recorded.headers.get("x-api-key") == "sk-upstream"
            or recorded.headers["authorization"] == "Bearer sk-upstream"
        )
        assert recorded.headers["anthropic-version"]

        with client.messages.stream(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "Say hi"}]
        ) as stream:
            assert "".join(stream.text_stream) == DEFAULT_REPLY
            final = stream.get_final_message()
        assert final.usage.output_tokens == 5 and final.usage.input_tokens == 5

        up.script(Behave(tool_call=TOOL), Behave(stream_error=True), Behave(status=429))
        with client.messages.stream(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "Weather?"}]
        ) as stream:
            final = stream.get_final_message()
        assert final.stop_reason == "tool_use"
        assert final.content[0].type == "tool_use" and final.content[0].input == TOOL["arguments"]
        with (
            pytest.raises(anthropic.APIStatusError),
            client.messages.stream(
                model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "x"}]
            ) as stream,
        ):
            stream.get_final_message()
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "x"}])


def test_start_stop_leaves_no_thread() -> None:
    upstream = FakeUpstream().start()
    name = f"fake-upstream-{upstream.port}"
    assert any(thread.name == name for thread in threading.enumerate())
    # An answer far later than stop() waits for its thread (0.25 + 10 s, then it raises):
    # stop() returns only if it does not wait for requests in flight.
    upstream.script(Behave(delay=60))
    connection = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=10)
    connection.request("GET", "/v1/models", headers=OPENAI_AUTH)
    upstream.wait_for_requests(1)
    upstream.stop()
    connection.close()
    assert not any(thread.name == name for thread in threading.enumerate())
    upstream.stop()  # idempotent
