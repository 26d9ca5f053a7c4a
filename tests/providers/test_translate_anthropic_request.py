"""OpenAI <-> Anthropic requests (``providers.translate.anthropic_request``): the upstream
request going OpenAI -> Anthropic, and a ``/v1/messages`` client's request becoming OpenAI."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneflow.lib.errors import InvalidInput
from providers.translate.anthropic_format import is_json_mode
from providers.translate.anthropic_request import anthropic_request_to_openai, openai_to_anthropic_request
from providers.translate.anthropic_response import anthropic_to_openai_response, openai_response_to_anthropic

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def to_anthropic(**body: Any) -> dict[str, Any]:
    return openai_to_anthropic_request(body, upstream_model="claude-sonnet-4-5")


def has_none(value: Any) -> bool:
    if isinstance(value, dict):
        return any(item is None or has_none(item) for item in value.values())
    if isinstance(value, list):
        return any(item is None or has_none(item) for item in value)
    return False


# --- OpenAI request -> Anthropic request ----------------------------------------------------


def test_it_lifts_system_and_developer_messages_into_top_level_system() -> None:
    request = to_anthropic(
        model="claude",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
        ],
    )
    assert request == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_it_maps_sampling_fields_and_drops_openai_only_ones() -> None:
    request = to_anthropic(
        model="claude",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=50,
        max_completion_tokens=200,
        stop="END",
        temperature=1.7,
        top_p=0.9,
        user="user-7f3a",
        stream=True,
        n=1,
        seed=7,
        logprobs=True,
        presence_penalty=0.5,
    )
    assert request == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "stop_sequences": ["END"],
        "temperature": 1,
        "top_p": 0.9,
        "metadata": {"user_id": "user-7f3a"},
        "stream": True,
    }


def test_it_uses_max_tokens_when_max_completion_tokens_is_absent() -> None:
    request = to_anthropic(messages=[{"role": "user", "content": "Hi"}], max_tokens=64, stop=["a", "b"])
    assert (request["max_tokens"], request["stop_sequences"]) == (64, ["a", "b"])


@pytest.mark.parametrize("user", ["alice@example.com", "+44 20 7946 0958", "(555) 123-4567"])
def test_it_keeps_personal_data_out_of_anthropic_metadata(user: str) -> None:
    assert "metadata" not in to_anthropic(messages=[{"role": "user", "content": "Hi"}], user=user)


def test_it_translates_tool_call_history_into_tool_use_and_tool_result_blocks() -> None:
    request = to_anthropic(
        messages=[
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "22C, cloudy"}]},
            {"role": "user", "content": "Thanks! Which is warmer?"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert request["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "22C, cloudy"}]},
                {"type": "text", "text": "Thanks! Which is warmer?"},
            ],
        },
    ]
    assert request["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    ]
    assert request["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_it_maps_every_tool_choice(tool_choice: Any, expected: dict[str, Any]) -> None:
    request = to_anthropic(messages=[{"role": "user", "content": "Hi"}], tools=[WEATHER_TOOL], tool_choice=tool_choice)
    assert request["tool_choice"] == expected


def test_it_forces_the_json_tool_for_json_object() -> None:
    body = {"messages": [{"role": "user", "content": "List two colours."}], "response_format": {"type": "json_object"}}
    request = to_anthropic(**body)
    assert is_json_mode(body)
    assert request["tools"] == [
        {"name": "json_tool_call", "description": "Respond with the JSON answer.", "input_schema": {"type": "object"}},
    ]
    assert request["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


def test_it_uses_the_json_schema_as_the_json_tool_input_schema() -> None:
    schema = {"type": "object", "properties": {"colours": {"type": "array", "items": {"type": "string"}}}}
    request = to_anthropic(
        messages=[{"role": "user", "content": "List two colours."}],
        response_format={"type": "json_schema", "json_schema": {"name": "colours", "schema": schema, "strict": True}},
    )
    assert request["tools"][0]["input_schema"] == schema
    assert request["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


def test_it_leaves_the_callers_tools_selectable_in_json_mode() -> None:
    request = to_anthropic(
        messages=[{"role": "user", "content": "Weather as JSON"}],
        tools=[WEATHER_TOOL],
        response_format={"type": "json_object"},
    )
    assert [tool["name"] for tool in request["tools"]] == ["get_weather", "json_tool_call"]
    assert "tool_choice" not in request


def test_it_declares_history_tools_as_unusable_when_the_request_offers_none() -> None:
    request = to_anthropic(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        ],
    )
    assert request["tools"] == [
        {
            "name": "get_weather",
            "description": "Used earlier in this conversation.",
            "input_schema": {"type": "object"},
        },
    ]
    assert request["tool_choice"] == {"type": "none"}


def test_it_translates_image_parts_to_base64_and_url_sources() -> None:
    request = to_anthropic(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these."},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
        ],
    )
    assert request["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_it_sends_base64_pdfs_as_document_blocks() -> None:
    pdf = {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    request = to_anthropic(messages=[{"role": "user", "content": [pdf, {"type": "text", "text": "Summarise."}]}])
    assert request["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
        {"type": "text", "text": "Summarise."},
    ]


def test_it_merges_same_role_neighbours_and_trims_a_trailing_prefill() -> None:
    request = to_anthropic(
        messages=[
            {"role": "user", "content": "First."},
            {"role": "user", "content": [{"type": "text", "text": "Second.", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": "The answer is "},
        ],
    )
    assert request["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "First."},
                {"type": "text", "text": "Second.", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]},
    ]


def test_it_never_sends_none_to_anthropic() -> None:
    request = to_anthropic(
        messages=[
            {"role": "user", "content": "Hi", "name": None},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": ""}}],
            },
            {"role": "tool", "tool_call_id": "t1", "content": ""},
        ],
        tools=[{"type": "function", "function": {"name": "f"}}],
        temperature=None,
        top_p=None,
        stop=None,
        user=None,
        tool_choice=None,
    )
    assert not has_none(request)
    assert request["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "Hi"}], "n": 2}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "Only a system prompt."}]}, "messages"),
        ({"messages": [{"role": "function", "name": "f", "content": "{}"}]}, "messages"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": "{oops"}}],
                    },
                ],
            },
            "messages",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages"),
        (
            {"messages": [{"role": "user", "content": "Hi"}], "tool_choice": "sometimes", "tools": [WEATHER_TOOL]},
            "tool_choice",
        ),
        ({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "web_search"}]}, "tools"),
        ({"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "yaml"}}, "response_format"),
    ],
)
def test_it_rejects_what_anthropic_cannot_express(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        openai_to_anthropic_request(body, upstream_model="claude-sonnet-4-5")
    assert caught.value.param == param
    assert caught.value.status_code == 400


# --- Client direction: Anthropic request -> OpenAI request ----------------------------------


def test_it_converts_an_anthropic_request_with_tools_and_images_to_openai() -> None:
    request = anthropic_request_to_openai(
        {
            "model": "claude-sonnet",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Where is this, and what is the weather?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Paris.", "signature": "sig"},
                        {"type": "text", "text": "That is Paris."},
                        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_01",
                            "content": [{"type": "text", "text": "18C"}],
                        },
                        {"type": "text", "text": "Nice?"},
                    ],
                },
            ],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Current weather.",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "stop_sequences": ["\n\nHuman:"],
            "temperature": 0.2,
            "top_k": 40,
            "metadata": {"user_id": "user-7f3a"},
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "stream": True,
        },
    )
    assert request == {
        "model": "claude-sonnet",
        "max_tokens": 1024,
        "messages": [
            {"role": "system", "content": "Be brief.\nUse metric units."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where is this, and what is the weather?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "That is Paris.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
            {"role": "user", "content": "Nice?"},
        ],
        "stop": ["\n\nHuman:"],
        "temperature": 0.2,
        "user": "user-7f3a",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            },
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }


def test_it_moves_tool_result_images_into_a_following_user_message() -> None:
    request = anthropic_request_to_openai(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [
                                {"type": "text", "text": "Screenshot taken."},
                                {"type": "image", "source": {"type": "url", "url": "https://example.com/s.png"}},
                            ],
                            "is_error": False,
                        },
                    ],
                },
            ],
        },
    )
    assert request["messages"] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Screenshot taken."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/s.png"}}]},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "tool", "name": "f"}, {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ],
)
def test_it_maps_anthropic_tool_choice_to_openai(tool_choice: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}], "tool_choice": tool_choice}
    request = anthropic_request_to_openai(body)
    assert {key: request[key] for key in expected} == expected


VALID = {"model": "claude-sonnet", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}


def test_a_system_message_in_the_conversation_stays_where_it_is() -> None:
    """Claude Code sends system-role messages between turns (PROTOCOLS.md §2.3); OpenAI takes them anywhere."""
    cached = {"type": "text", "text": "Tool output is truncated.", "cache_control": {"type": "ephemeral"}}
    body = VALID | {
        "system": "You are a coding agent.",
        "messages": [
            {"role": "user", "content": "Fix the bug."},
            {"role": "system", "content": [cached, {"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Go on."},
        ],
    }

    roles = [(m["role"], m["content"]) for m in anthropic_request_to_openai(body)["messages"]]

    assert roles == [
        ("system", "You are a coding agent."),
        ("user", "Fix the bug."),
        ("system", "Tool output is truncated.\nBe brief."),
        ("user", "Go on."),
    ]


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": "Hi"}, "messages"),
        ({"messages": [{"role": "tool", "content": "Hi"}]}, "messages"),
        ({"messages": [{"role": "system", "content": [{"type": "image", "source": {}}]}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "video", "source": {}}]}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]}, "messages"),
        ({"system": [{"type": "image"}]}, "system"),
        ({"tools": [{"description": "no name", "input_schema": {}}]}, "tools"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "u"}}]}]},
            "messages",
        ),
        ({"tool_choice": {"type": "tool"}}, "tool_choice"),
        ({"stop_sequences": "STOP"}, "stop_sequences"),
    ],
)
def test_it_rejects_invalid_anthropic_requests_naming_the_field(changes: dict[str, Any], param: str) -> None:
    body = {key: value for key, value in (VALID | changes).items() if value is not None}
    with pytest.raises(InvalidInput) as caught:
        anthropic_request_to_openai(body)
    assert caught.value.param == param


def test_server_tools_and_their_blocks_are_dropped_for_other_providers() -> None:
    body = VALID | {
        "tools": [
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
            {"name": "Bash", "description": "Run", "input_schema": {"type": "object"}},
        ],
        "messages": [
            {"role": "user", "content": "Look it up"},
            {
                "role": "assistant",
                "content": [
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
                    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Found it."},
                ],
            },
            {"role": "user", "content": "Thanks"},
        ],
    }
    request = anthropic_request_to_openai(body)
    assert [tool["function"]["name"] for tool in request["tools"]] == ["Bash"]
    assert request["messages"][1] == {"role": "assistant", "content": "Found it."}


def test_documents_and_search_results_become_parts_the_chat_format_carries() -> None:
    pdf = {
        "type": "document",
        "title": "spec.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    text = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}
    found = {
        "type": "search_result",
        "title": "Result",
        "source": "https://example.com/a",
        "content": [{"type": "text", "text": "snippet"}],
    }
    body = VALID | {"messages": [{"role": "user", "content": [pdf, text, found, {"type": "text", "text": "Sum up"}]}]}
    [message] = anthropic_request_to_openai(body)["messages"]
    assert message["content"] == [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "spec.pdf"}},
        {"type": "text", "text": "plain words"},
        {"type": "text", "text": "Result\nhttps://example.com/a\nsnippet"},
        {"type": "text", "text": "Sum up"},
    ]


@pytest.mark.parametrize(
    "thinking",
    [
        {"type": "enabled", "budget_tokens": 2048},
        {"type": "adaptive", "display": "omitted"},
        {"type": "disabled"},
    ],
)
def test_every_form_of_thinking_is_dropped_by_the_written_rule(thinking: dict[str, Any]) -> None:
    request = anthropic_request_to_openai(VALID | {"thinking": thinking, "context_management": {"edits": []}})
    assert not {"thinking", "reasoning_effort", "context_management"} & set(request)


# --- Both directions ---------------------------------------------------------------------


@given(st.text(min_size=1).filter(str.strip))
def test_it_carries_text_through_every_translation_unchanged(text: str) -> None:
    anthropic = to_anthropic(messages=[{"role": "user", "content": text}])
    assert anthropic["messages"][0]["content"] == [{"type": "text", "text": text}]
    back = anthropic_request_to_openai({"model": "m", "max_tokens": 10, "messages": anthropic["messages"]})
    assert back["messages"] == [{"role": "user", "content": text}]
    answer = anthropic_to_openai_response(
        {"id": "msg_1", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"},
        model="m",
    )
    assert answer["choices"][0]["message"]["content"] == text
    assert openai_response_to_anthropic(answer, model="m")["content"] == [{"type": "text", "text": text}]
