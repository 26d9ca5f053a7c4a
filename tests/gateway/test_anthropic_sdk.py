"""The official anthropic SDKs (current, and a 0.x release) against OneFlow's /v1/messages."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes import Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route

LEGACY_SDK = Path(__file__).resolve().parents[2] / ".venv" / "legacy-sdk"
MESSAGES: Any = [{"role": "user", "content": "Hello there, gateway!"}]


def client(gateway: Gateway, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.server.url, api_key=key or gateway.key.raw, max_retries=0)


def test_messages_create(gateway: Gateway) -> None:
    raw = client(gateway).messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=64, system="Be brief.", messages=MESSAGES
    )
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "gpt-4o-mini"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text
    assert message.usage.input_tokens > 0
    assert message._request_id == raw.headers["x-request-id"]
    [event] = gateway.events()
    assert (event.endpoint, event.prompt_tokens) == (
        "messages",
        message.usage.input_tokens,
    )
    assert event.completion_tokens == message.usage.output_tokens


def test_messages_stream(gateway: Gateway) -> None:
    sdk = client(gateway)
    expected = sdk.messages.create(model="gpt-4o-mini", max_tokens=64, messages=MESSAGES)
    with sdk.messages.stream(model="gpt-4o-mini", max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == expected.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == expected.usage.output_tokens
    events = gateway.events()
    assert [e.stream for e in events] == [False, True]
    assert events[1].completion_tokens == expected.usage.output_tokens


def test_tool_use_from_an_openai_upstream(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, "openai")
    upstream.script(Behave(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}}))
    message = client(gateway).messages.create(
        model="smart",
        max_tokens=64,
        messages=MESSAGES,
        tools=[{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    )
    assert message.stop_reason == "tool_use"
    [block] = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather"
    assert block.input == {"city": "Paris"}
    sent = upstream.requests[0].json
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert UPSTREAM_KEY in upstream.requests[0].headers["authorization"]


def test_errors_in_anthropic_shape(gateway: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(gateway, key="of_live_AAAAAAAAAAAA_" + "C" * 32).messages.create(
            model="gpt-4o-mini", max_tokens=8, messages=MESSAGES
        )
    assert bad_key.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        client(gateway).messages.create(model="claude-nope", max_tokens=8, messages=MESSAGES)
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(gateway).messages.create(model="gpt-4o-mini", max_tokens=8, messages=[])
    assert "messages" in bad.value.message


def test_a_missing_max_tokens_is_refused_like_anthropic_does(gateway: Gateway) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", int(gateway.server.url.rsplit(":", 1)[1]))
    connection.request(
        "POST",
        "/v1/messages",
        body=json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}),
        headers={"x-api-key": gateway.key.raw, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    response = connection.getresponse()
    body = json.loads(response.read())
    assert response.status == 400
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert response.getheader("request-id")


LEGACY_SCRIPT = """
import json, sys, anthropic
client = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
message = client.messages.create(model="gpt-4o-mini", max_tokens=32, messages=[{"role": "user", "content": "Hi"}])
with client.messages.stream(model="gpt-4o-mini", max_tokens=32, messages=[{"role": "user", "content": "Hi"}]) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
print(json.dumps({"version": anthropic.__version__, "text": message.content[0].text, "streamed": streamed,
                  "output_tokens": final.usage.output_tokens}))
"""


def test_an_older_anthropic_sdk_works_too(gateway: Gateway) -> None:
    if not (LEGACY_SDK / "anthropic").is_dir():
        pytest.fail("the legacy SDK is missing: run ./scripts/test, which installs requirements/legacy-sdk.txt")
    env = {**os.environ, "PYTHONPATH": str(LEGACY_SDK)}
    result = subprocess.run(  # noqa: S603 - our interpreter and script
        [sys.executable, "-c", LEGACY_SCRIPT, gateway.server.url, gateway.key.raw],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["version"].startswith("0.")
    assert answer["text"] == answer["streamed"]
    assert answer["output_tokens"] > 0
    assert len(gateway.events()) == 2


def test_a_system_message_between_turns_is_served_as_claude_code_sends_it(gateway: Gateway) -> None:
    """Claude Code puts system-role messages in the conversation; the SDK's types do not name them."""
    turns: Any = [
        {"role": "user", "content": "Fix the bug."},
        {"role": "system", "content": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "Go on."},
    ]
    message = client(gateway).messages.create(model="gpt-4o-mini", max_tokens=64, messages=turns)
    assert message.stop_reason == "end_turn"
    [event] = gateway.events()
    assert (event.endpoint, event.status_code) == ("messages", 200)


CACHED_SYSTEM: Any = [
    {"type": "text", "text": "You are a careful assistant."},
    {
        "type": "text",
        "text": "A long, stable preamble worth caching.",
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    },
]
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


def ask_with_cache_and_thinking(gateway: Gateway, *, streamed: bool) -> Any:
    sdk = client(gateway)
    options: Any = {"model": "smart", "max_tokens": 2048, "system": CACHED_SYSTEM, "thinking": THINKING}
    if streamed:
        with sdk.messages.stream(messages=MESSAGES, **options) as stream:
            return stream.get_final_message()
    return sdk.messages.create(messages=MESSAGES, **options)


@pytest.mark.parametrize("streamed", [False, True])
def test_cache_control_and_thinking_reach_an_anthropic_upstream_as_sent(
    gateway: Gateway, upstream: FakeUpstream, streamed: bool
) -> None:
    route(upstream, "anthropic")
    upstream.script(Behave(cached_tokens=4))
    message = ask_with_cache_and_thinking(gateway, streamed=streamed)
    assert message.content[0].text == "Hello from the fake upstream."
    assert message.usage.cache_read_input_tokens == 4
    sent = upstream.requests[0].json
    assert sent["system"] == CACHED_SYSTEM
    assert sent["thinking"] == THINKING
    [event] = gateway.events()
    assert event.cached_tokens == 4


@pytest.mark.parametrize("streamed", [False, True])
def test_cache_control_and_thinking_are_translated_away_for_an_openai_upstream(
    gateway: Gateway, upstream: FakeUpstream, streamed: bool
) -> None:
    route(upstream, "openai")
    message = ask_with_cache_and_thinking(gateway, streamed=streamed)
    assert message.content[0].text == "Hello from the fake upstream."
    sent = upstream.requests[0].json
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are a careful assistant.\nA long, stable preamble worth caching.",
    }
    assert "thinking" not in sent and "reasoning_effort" not in sent
