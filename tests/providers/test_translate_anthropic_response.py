"""OpenAI <-> Anthropic answers and streams (``providers.translate.anthropic_response``):
Anthropic answers and events coming back as OpenAI, and OpenAI answers and chunks going
out to ``/v1/messages`` clients as Anthropic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from providers.translate.anthropic_format import UpstreamStreamError
from providers.translate.anthropic_response import (
    AnthropicStreamToOpenAI,
    OpenAIStreamToAnthropic,
    anthropic_to_openai_response,
    openai_response_to_anthropic,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def openai_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "claude-sonnet",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


# --- Anthropic response -> OpenAI response --------------------------------------------------


@time_machine.travel(T0, tick=False)
def test_it_turns_an_anthropic_tool_use_answer_into_openai_tool_calls() -> None:
    response = anthropic_to_openai_response(
        {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 40,
                "output_tokens": 30,
                "cache_creation_input_tokens": 200,
                "cache_read_input_tokens": 1000,
            },
        },
        model="claude-sonnet",
    )
    assert response == {
        "id": "chatcmpl-01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": int(T0.timestamp()),
        "model": "claude-sonnet",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01A",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
        ],
        "usage": {
            "prompt_tokens": 1240,
            "completion_tokens": 30,
            "total_tokens": 1270,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_5m_tokens": 200},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": None,
    }


def test_it_turns_the_json_tool_input_into_content() -> None:
    response = anthropic_to_openai_response(
        {
            "id": "msg_1",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "json_tool_call", "input": {"colours": ["red"]}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
        model="claude-sonnet",
        json_mode=True,
    )
    choice = response["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": '{"colours": ["red"]}', "refusal": None}
    assert choice["finish_reason"] == "stop"


def test_it_reports_no_content_as_none_and_keeps_thinking_aside() -> None:
    response = anthropic_to_openai_response(
        {
            "id": "msg_1",
            "content": [{"type": "thinking", "thinking": "Hmm.", "signature": "sig"}],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 3, "output_tokens": 4},
        },
        model="m",
    )
    message = response["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == (None, "Hmm.")
    assert response["choices"][0]["finish_reason"] == "length"


# --- Anthropic stream -> OpenAI chunks ------------------------------------------------------

ANTHROPIC_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 25,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 100,
                    "output_tokens": 1,
                },
            },
        },
    ),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me"}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " check."}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 42},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def feed_all(stream: AnthropicStreamToOpenAI, events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [chunk for event, data in events for chunk in stream.feed(event, data)]


def test_it_streams_anthropic_text_and_tool_use_as_openai_chunks() -> None:
    stream = AnthropicStreamToOpenAI(model="claude-sonnet", completion_id="chatcmpl-abc", created=1_700_000_000)
    assert stream.usage is None
    chunks = feed_all(stream, ANTHROPIC_EVENTS)
    assert chunks == [
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Let me"}),
        openai_chunk({"content": " check."}),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
        ),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        openai_chunk({}, "tool_calls"),
    ]
    assert stream.finished
    assert stream.usage == {
        "prompt_tokens": 125,
        "completion_tokens": 42,
        "total_tokens": 167,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_it_streams_the_json_tool_as_content() -> None:
    events = [
        ANTHROPIC_EVENTS[0],
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_9", "name": "json_tool_call", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"ok": '},
            },
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "true}"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    stream = AnthropicStreamToOpenAI(
        model="claude-sonnet", completion_id="chatcmpl-abc", created=1_700_000_000, json_mode=True
    )
    assert feed_all(stream, events) == [
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": '{"ok": '}),
        openai_chunk({"content": "true}"}),
        openai_chunk({}, "stop"),
    ]


def test_it_raises_when_anthropic_reports_an_error_mid_stream() -> None:
    stream = AnthropicStreamToOpenAI(model="m", completion_id="chatcmpl-abc", created=1)
    stream.feed(*ANTHROPIC_EVENTS[0])
    with pytest.raises(UpstreamStreamError) as caught:
        stream.feed("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert (caught.value.error_type, caught.value.message) == ("overloaded_error", "Overloaded")
    assert not stream.finished


@given(st.lists(st.text(min_size=1), min_size=1, max_size=8))
def test_it_streams_every_text_fragment_in_order(fragments: list[str]) -> None:
    stream = AnthropicStreamToOpenAI(model="m", completion_id="chatcmpl-abc", created=1)
    events = [ANTHROPIC_EVENTS[0], ANTHROPIC_EVENTS[1]] + [
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": fragment}})
        for fragment in fragments
    ]
    chunks = feed_all(stream, events)
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == "".join(fragments)


# --- Client direction: OpenAI response and stream -> Anthropic -----------------------------


def test_it_converts_an_openai_answer_to_an_anthropic_message() -> None:
    message = openai_response_to_anthropic(
        {
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Checking.",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                            },
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":'},
                            },
                        ],
                    },
                    "finish_reason": "tool_calls",
                },
            ],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 1000}},
        },
        model="claude-sonnet",
    )
    assert message == {
        "id": "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 200,
            "output_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        },
    }


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal")],
)
def test_it_maps_openai_finish_reasons_to_anthropic(finish_reason: str, stop_reason: str) -> None:
    answer = {"choices": [{"message": {"content": "x"}, "finish_reason": finish_reason}]}
    assert openai_response_to_anthropic(answer, model="m")["stop_reason"] == stop_reason


def test_it_streams_openai_chunks_as_anthropic_events() -> None:
    stream = OpenAIStreamToAnthropic(model="claude-sonnet", message_id="msg_abc")
    chunks = [
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Let me"}),
        openai_chunk({"content": " check."}),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
        ),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        openai_chunk({}, "tool_calls"),
        {
            **openai_chunk({}),
            "choices": [],
            "usage": {
                "prompt_tokens": 125,
                "completion_tokens": 42,
                "total_tokens": 167,
                "prompt_tokens_details": {"cached_tokens": 100},
            },
        },
    ]
    events = [event for chunk in chunks for event in stream.feed(chunk)] + stream.finish()
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_abc",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 0,
                        "output_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                    },
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " check."}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {
                    "output_tokens": 42,
                    "input_tokens": 25,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 100,
                    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert all(data["type"] == event for event, data in events)
    assert stream.finish() == []


def test_it_splits_calls_that_reuse_one_index_into_separate_tool_use_blocks() -> None:
    stream = OpenAIStreamToAnthropic(model="m", message_id="msg_1")
    for call_id, city in [("call_a", "Paris"), ("call_b", "Rome")]:
        call = {"index": 0, "id": call_id, "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        stream.feed(openai_chunk({"tool_calls": [call]}))
    events = stream.finish()
    assert events[0] == ("content_block_stop", {"type": "content_block_stop", "index": 1})


def test_it_closes_an_empty_stream_as_a_complete_message() -> None:
    events = OpenAIStreamToAnthropic(model="m", message_id="msg_1").finish()
    assert [event for event, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[1][1]["usage"] == {"output_tokens": 0}


@given(st.lists(st.text(min_size=1), min_size=1, max_size=8))
def test_it_streams_openai_text_fragments_into_one_text_block(fragments: list[str]) -> None:
    stream = OpenAIStreamToAnthropic(model="m", message_id="msg_1")
    events = [event for fragment in fragments for event in stream.feed(openai_chunk({"content": fragment}))]
    events += stream.finish()
    names = [event for event, _ in events]
    assert names.count("content_block_start") == 1
    assert names.count("content_block_stop") == 1
    text = "".join(data["delta"]["text"] for event, data in events if event == "content_block_delta")
    assert text == "".join(fragments)
