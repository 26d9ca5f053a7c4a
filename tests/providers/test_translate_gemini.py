"""OpenAI <-> Gemini translation: requests, answers, streams and error statuses."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from oneflow.lib.errors import InvalidInput
from providers.translate.anthropic import UpstreamStreamError
from providers.translate.gemini import (
    SKIP_SIGNATURE,
    GeminiStreamToOpenAI,
    finish_reason_from_gemini,
    gemini_error_to_status,
    gemini_to_openai_response,
    openai_to_gemini_request,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CALL_ID = re.compile(r"call_[0-9a-f]{24}")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather.", "parameters": WEATHER_PARAMETERS},
}


def chunk(delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gemini-flash",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


# --- OpenAI request -> Gemini request -------------------------------------------------------


def test_it_builds_a_gemini_request_from_a_tool_using_conversation() -> None:
    request = openai_to_gemini_request(
        {
            "model": "gemini-flash",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Use metric units."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Where is this? And the weather in Rome?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/photo.jpg"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 18}'},
                {"role": "tool", "tool_call_id": "call_2", "content": "22C, cloudy"},
            ],
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "temperature": 0.3,
            "top_p": 0.9,
            "max_completion_tokens": 500,
            "max_tokens": 100,
            "stop": "END",
            "n": 2,
            "seed": 42,
            "user": "ignored",
        },
    )
    assert request == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric units."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Where is this? And the weather in Rome?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {"fileData": {"fileUri": "https://example.com/photo.jpg", "mimeType": "image/jpeg"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": SKIP_SIGNATURE,
                    },
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"content": {"celsius": 18}}}},
                    {"functionResponse": {"name": "get_weather", "response": {"content": "22C, cloudy"}}},
                ],
            },
        ],
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "maxOutputTokens": 500,
            "stopSequences": ["END"],
            "candidateCount": 2,
            "seed": 42,
        },
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather.",
                        "parametersJsonSchema": WEATHER_PARAMETERS,
                    },
                ],
            },
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    }


def test_it_merges_consecutive_turns_of_one_role() -> None:
    request = openai_to_gemini_request(
        {
            "messages": [
                {"role": "user", "content": "One."},
                {"role": "user", "content": "Two."},
                {"role": "assistant", "content": "Three."},
                {"role": "assistant", "content": [{"type": "text", "text": "Four."}]},
            ],
        },
    )
    assert request == {
        "contents": [
            {"role": "user", "parts": [{"text": "One."}, {"text": "Two."}]},
            {"role": "model", "parts": [{"text": "Three."}, {"text": "Four."}]},
        ],
    }


def test_it_sends_audio_and_pdfs_inline_and_keeps_plain_tool_results_as_text() -> None:
    request = openai_to_gemini_request(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}},
                        {
                            "type": "file",
                            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
                        },
                    ],
                },
                {"role": "assistant", "tool_calls": [{"id": "call_9", "function": {"name": "count", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "call_9", "content": "42"},
            ],
        },
    )
    assert request["contents"] == [
        {
            "role": "user",
            "parts": [
                {"inlineData": {"mimeType": "audio/mp3", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            ],
        },
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "count", "args": {}}, "thoughtSignature": SKIP_SIGNATURE}],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "count", "response": {"content": "42"}}}]},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "mode"),
    [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")],
)
def test_it_maps_tool_choice_to_a_function_calling_mode(tool_choice: str, mode: str) -> None:
    request = openai_to_gemini_request(
        {"messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER_TOOL], "tool_choice": tool_choice},
    )
    assert request["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


def test_it_leaves_out_parameters_of_a_tool_without_arguments() -> None:
    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    request = openai_to_gemini_request({"messages": [{"role": "user", "content": "Time?"}], "tools": [tool]})
    assert request["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


def test_it_asks_for_json_with_and_without_a_schema() -> None:
    messages = [{"role": "user", "content": "Colours?"}]
    json_object = openai_to_gemini_request({"messages": messages, "response_format": {"type": "json_object"}})
    assert json_object["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {"type": "object", "properties": {"colours": {"type": "array"}}, "strict": True}
    json_schema = openai_to_gemini_request(
        {
            "messages": messages,
            "max_tokens": 64,
            "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}},
        },
    )
    assert json_schema["generationConfig"] == {
        "maxOutputTokens": 64,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"colours": {"type": "array"}}},
    }
    assert schema["strict"] is True  # the caller's schema is not modified


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "Only this."}]}, "messages"),
        ({"messages": [{"role": "tool", "tool_call_id": "call_unknown", "content": "18C"}]}, "messages"),
        ({"messages": [{"role": "function", "name": "f", "content": "{}"}]}, "messages"),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1"}}]}
                ]
            },
            "messages",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
            "messages",
        ),
        ({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "code_interpreter"}]}, "tools"),
        ({"messages": [{"role": "user", "content": "Hi"}], "tool_choice": {"type": "function"}}, "tool_choice"),
        ({"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "grammar"}}, "response_format"),
    ],
)
def test_it_rejects_what_gemini_cannot_express(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        openai_to_gemini_request(body)
    assert caught.value.param == param


# --- Gemini response -> OpenAI response -----------------------------------------------------


@time_machine.travel(T0, tick=False)
def test_it_converts_a_gemini_answer_with_function_calls() -> None:
    response = gemini_to_openai_response(
        {
            "candidates": [
                {
                    "index": 0,
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "Planning the lookup.", "thought": True},
                            {"text": "Checking "},
                            {"text": "both."},
                            {
                                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                "thoughtSignature": "c2ln",
                            },
                            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                        ],
                    },
                    "finishReason": "STOP",
                },
            ],
            "usageMetadata": {
                "promptTokenCount": 1200,
                "candidatesTokenCount": 30,
                "thoughtsTokenCount": 12,
                "cachedContentTokenCount": 1000,
                "totalTokenCount": 1242,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mNK2aPXkB9WS",
        },
        model="gemini-flash",
    )
    calls = response["choices"][0]["message"]["tool_calls"]
    assert all(CALL_ID.fullmatch(call["id"]) for call in calls)
    assert calls[0]["id"] != calls[1]["id"]
    assert response == {
        "id": "chatcmpl-mNK2aPXkB9WS",
        "object": "chat.completion",
        "created": int(T0.timestamp()),
        "model": "gemini-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking both.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": calls[0]["id"],
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": calls[1]["id"],
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                        },
                    ],
                    "reasoning_content": "Planning the lookup.",
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
        ],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 42,
            "total_tokens": 1242,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
        "system_fingerprint": None,
    }


def test_it_returns_one_choice_per_candidate() -> None:
    response = gemini_to_openai_response(
        {
            "candidates": [
                {"index": 0, "content": {"parts": [{"text": "Red"}]}, "finishReason": "STOP"},
                {"index": 1, "content": {"parts": [{"text": "Blue and"}]}, "finishReason": "MAX_TOKENS"},
            ],
        },
        model="gemini-flash",
    )
    summary = [(c["index"], c["message"]["content"], c["finish_reason"]) for c in response["choices"]]
    assert summary == [(0, "Red", "stop"), (1, "Blue and", "length")]
    assert response["usage"]["total_tokens"] == 0


def test_it_reports_a_blocked_prompt_as_content_filter() -> None:
    response = gemini_to_openai_response(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}},
        model="gemini-flash",
    )
    assert response["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        },
    ]
    assert response["usage"]["prompt_tokens"] == 9


@pytest.mark.parametrize(
    ("reason", "finish_reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("SOMETHING_NEW", "stop"),
        (None, "stop"),
    ],
)
def test_it_maps_gemini_finish_reasons(reason: str | None, finish_reason: str) -> None:
    assert finish_reason_from_gemini(reason) == finish_reason


@given(st.one_of(st.none(), st.text()), st.booleans())
def test_it_always_maps_finish_reasons_into_the_openai_set(reason: str | None, has_tool_calls: bool) -> None:
    mapped = finish_reason_from_gemini(reason, has_tool_calls=has_tool_calls)
    assert mapped in {"stop", "length", "tool_calls", "content_filter"}


# --- Gemini stream -> OpenAI chunks ---------------------------------------------------------


def test_it_streams_gemini_text_and_function_calls_as_openai_chunks() -> None:
    stream = GeminiStreamToOpenAI(model="gemini-flash", completion_id="chatcmpl-abc", created=1_700_000_000)
    responses = [
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Let me"}]}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 125, "candidatesTokenCount": 2, "totalTokenCount": 127},
        },
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": " check."}]}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 125, "candidatesTokenCount": 4, "totalTokenCount": 129},
        },
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {
                                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                "thoughtSignature": "c2ln",
                            }
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                },
            ],
            "usageMetadata": {
                "promptTokenCount": 125,
                "candidatesTokenCount": 20,
                "thoughtsTokenCount": 22,
                "cachedContentTokenCount": 100,
                "totalTokenCount": 167,
            },
        },
    ]
    chunks = [chunk_ for response in responses for chunk_ in stream.feed(response)]
    call_id = chunks[3]["choices"][0]["delta"]["tool_calls"][0]["id"]
    assert CALL_ID.fullmatch(call_id)
    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me"}),
        chunk({"content": " check."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                ],
            },
        ),
        chunk({}, "tool_calls"),
    ]
    assert stream.finished
    assert stream.usage == {
        "prompt_tokens": 125,
        "completion_tokens": 42,
        "total_tokens": 167,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 22},
    }


def test_it_knows_no_usage_and_is_unfinished_before_the_last_response() -> None:
    stream = GeminiStreamToOpenAI(model="gemini-flash", completion_id="chatcmpl-abc", created=1_700_000_000)
    assert (stream.usage, stream.finished) == (None, False)
    stream.feed({"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "index": 0}]})
    assert (stream.usage, stream.finished) == (None, False)


def test_it_raises_when_gemini_reports_an_error_mid_stream() -> None:
    stream = GeminiStreamToOpenAI(model="gemini-flash", completion_id="chatcmpl-abc", created=1)
    with pytest.raises(UpstreamStreamError) as caught:
        stream.feed({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    assert (caught.value.error_type, caught.value.message) == ("UNAVAILABLE", "The model is overloaded.")


# --- Gemini errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"error": {"code": 404, "message": "models/gemini-9 is not found", "status": "NOT_FOUND"}},
            (404, "models/gemini-9 is not found"),
        ),
        (
            {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}},
            (429, "Quota exceeded"),
        ),
        ({"error": {"message": "Deadline", "status": "DEADLINE_EXCEEDED"}}, (504, "Deadline")),
        ({"error": {"status": "PERMISSION_DENIED"}}, (403, "PERMISSION_DENIED")),
        ([{"error": {"code": 400, "message": "Bad key", "status": "INVALID_ARGUMENT"}}], (400, "Bad key")),
        ({"unexpected": True}, (502, "The upstream returned an error without a description.")),
    ],
)
def test_it_maps_gemini_errors_to_http_statuses(body: Any, expected: tuple[int, str]) -> None:
    assert gemini_error_to_status(body) == expected
