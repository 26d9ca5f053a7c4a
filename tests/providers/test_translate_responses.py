"""The Responses API <-> the internal chat format (``providers.translate.responses``,
``responses_answer`` and ``responses_stream``): requests going to deployments that do not speak Responses, and
their answers and chunks coming back as Response objects and typed events.

The stream tests feed the events to the openai SDK's own accumulator (what
``client.responses.stream`` runs), so a wrong shape or order fails here as it would
fail a customer."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from oneflow.lib.errors import InvalidInput
from providers.tokens import openai_usage
from providers.translate.responses import Translation, responses_request_to_openai
from providers.translate.responses_answer import (
    openai_response_to_responses,
    usage_from_responses,
    usage_to_responses,
)
from providers.translate.responses_stream import OpenAIStreamToResponses

WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
# The shape of what Codex CLI 0.169.0 sends (PROTOCOLS.md §2.3), trimmed.
CODEX: dict[str, Any] = {
    "model": "smart",
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context/>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say PONG"}]},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "strict": False, "parameters": {"type": "object"}},
        {
            "type": "namespace",
            "name": "multi_agent_v1",
            "description": "Sub-agents.",
            "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}],
        },
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "session-1",
    "client_metadata": {"x-codex-installation-id": "abc"},
    "stream": True,
}


def translate(**fields: Any) -> dict[str, Any]:
    return responses_request_to_openai({"model": "smart", "input": "Hi", **fields}).body


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def completion(message: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
        "usage": openai_usage(prompt=12, completion=5, cached=4, reasoning=2),
    }


# --- request -------------------------------------------------------------------------------


def test_a_codex_request_becomes_a_chat_request_with_its_function_tools() -> None:
    translation = responses_request_to_openai(CODEX)
    body = translation.body

    assert body["messages"] == [
        {"role": "system", "content": "You are Codex."},
        {"role": "user", "content": [{"type": "text", "text": "<environment_context/>"}]},
        {"role": "user", "content": [{"type": "text", "text": "Say PONG"}]},
    ]
    # The namespace is flattened into its function's name; the hosted web_search is dropped.
    assert [tool["function"]["name"] for tool in body["tools"]] == ["exec_command", "multi_agent_v1__spawn_agent"]
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "exec_command", "parameters": {"type": "object"}, "strict": False},
    }
    assert translation.tool("multi_agent_v1__spawn_agent").namespace == "multi_agent_v1"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["tool_choice"], body["parallel_tool_calls"], body["prompt_cache_key"]) == ("auto", True, "session-1")
    # Responses-only fields have no chat equivalent: none reaches the chat upstream.
    for dropped in ("input", "include", "store", "client_metadata", "reasoning", "reasoning_effort"):
        assert dropped not in body


def test_instructions_come_first_and_settings_map_to_their_chat_names() -> None:
    body = translate(
        instructions="Be brief.",
        max_output_tokens=64,
        reasoning={"effort": "low", "summary": "auto"},
        text={"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}},
        temperature=0.2,
        top_p=0.5,
        user="u-1",
        metadata={"k": "v"},
        safety_identifier="s-1",
        provider={"order": ["openai"]},
        truncation="auto",
    )
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert body["max_completion_tokens"] == 64
    assert body["reasoning_effort"] == "low"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    assert (body["temperature"], body["top_p"], body["user"], body["metadata"]) == (0.2, 0.5, "u-1", {"k": "v"})
    assert body["safety_identifier"] == "s-1"
    assert body["provider"] == {"order": ["openai"]}, "OneFlow's own routing field reaches admission"
    assert "truncation" not in body and "stream" not in body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "json_object"}}, {"response_format": {"type": "json_object"}}),
        ({"format": {"type": "text"}}, {}),
        ({"verbosity": "low"}, {"verbosity": "low"}),
    ],
)
def test_text_format(text: dict[str, Any], expected: dict[str, Any]) -> None:
    body = translate(text=text)
    assert {key: body[key] for key in ("response_format", "verbosity") if key in body} == expected


def test_a_function_call_turn_becomes_assistant_tool_calls_and_tool_messages() -> None:
    body = translate(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        ],
        tools=[WEATHER],
    )

    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather in a city.",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]


def test_images_a_tool_returned_follow_the_tool_messages_as_user_content() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}
    body = translate(
        input=[
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [image]},
            {"role": "user", "content": "What is in it?"},
        ]
    )
    assert [m["role"] for m in body["messages"]] == ["assistant", "tool", "user", "user"]
    assert body["messages"][2]["content"] == [
        {"type": "image_url", "image_url": {"url": image["image_url"], "detail": "low"}}
    ]


def test_a_namespaced_call_and_a_custom_tool_call_keep_their_function_names() -> None:
    body = translate(
        input=[
            {"type": "function_call", "call_id": "c1", "name": "spawn_agent", "namespace": "ma", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
        ],
        tools=[
            {
                "type": "custom",
                "name": "apply_patch",
                "format": {"type": "grammar", "syntax": "lark", "definition": "start: X"},
            }
        ],
    )
    calls = [m["tool_calls"][0]["function"] for m in body["messages"] if m.get("tool_calls")]
    assert calls == [
        {"name": "ma__spawn_agent", "arguments": "{}"},
        {"name": "apply_patch", "arguments": json.dumps({"input": "*** Begin Patch"})},
    ]
    [custom] = body["tools"]
    assert custom["function"]["parameters"]["required"] == ["input"]
    assert "start: X" in custom["function"]["description"], "the grammar is told to the model in words"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", "required"),
        ({"type": "function", "name": "weather"}, {"type": "function", "function": {"name": "weather"}}),
        (
            {"type": "function", "name": "spawn_agent", "namespace": "ma"},
            {"type": "function", "function": {"name": "ma__spawn_agent"}},
        ),
    ],
)
def test_tool_choice_forms(choice: Any, expected: Any) -> None:
    tools = [
        WEATHER,
        {"type": "namespace", "name": "ma", "description": "d", "tools": [{"type": "function", "name": "spawn_agent"}]},
    ]
    assert translate(tools=tools, tool_choice=choice)["tool_choice"] == expected


def test_allowed_tools_narrow_the_tools_sent() -> None:
    other = {**WEATHER, "name": "time"}
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "time"}]}
    body = translate(tools=[WEATHER, other], tool_choice=choice)
    assert [tool["function"]["name"] for tool in body["tools"]] == ["time"]
    assert body["tool_choice"] == "required"


def test_without_tools_left_no_tool_settings_are_sent() -> None:
    body = translate(tools=[{"type": "web_search"}], tool_choice="auto", parallel_tool_calls=False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search"}], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]}]},
            "input[0].content[0].file_data",
        ),
        ({"input": [{"role": "user", "content": [{"type": "input_video"}]}]}, "input[0].content[0].type"),
        (
            {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "https://x/a.png"}]}]},
            "input[0].content",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "local_shell_call", "call_id": "c"}]}, "input[0].type"),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0]"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "input[0].output"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ],
)
def test_what_chat_completions_cannot_carry_is_refused_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        translate(**fields)
    assert refused.value.param == param
    assert refused.value.message


def test_a_file_given_inline_becomes_a_file_part() -> None:
    part = {"type": "input_file", "file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}
    [message] = translate(input=[{"role": "user", "content": [part]}])["messages"]
    assert message["content"] == [{"type": "file", "file": {"file_data": part["file_data"], "filename": "a.pdf"}}]


# --- answer ----------------------------------------------------------------------------------


def render(answer: dict[str, Any], request: dict[str, Any] | None = None) -> dict[str, Any]:
    translation = responses_request_to_openai(request or {"model": "smart", "input": "Hi", "tools": [WEATHER]})
    return openai_response_to_responses(answer, translation, response_id="resp_1", model="smart", created_at=7)


def test_a_chat_answer_becomes_a_response_with_its_items_and_usage() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    response = render(
        completion({"content": "Let me look.", "reasoning_content": "Hm.", "tool_calls": [call]}, "tool_calls")
    )

    assert (response["id"], response["object"], response["status"], response["model"]) == (
        "resp_1",
        "response",
        "completed",
        "smart",
    )
    reasoning, message, function_call = response["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"] == [{"type": "reasoning_text", "text": "Hm."}]
    assert message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "text": "Let me look.", "annotations": [], "logprobs": []}]
    assert {k: function_call[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "weather",
        "arguments": '{"city":"Paris"}',
        "status": "completed",
    }
    assert function_call["id"].startswith("fc_")
    assert response["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 17,
    }
    assert response["tools"] == [WEATHER] and response["store"] is False and response["incomplete_details"] is None


def test_a_cut_answer_is_incomplete_and_a_refusal_is_a_refusal_part() -> None:
    cut = render(completion({"content": "Once upon"}, "length"))
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert cut["output"][0]["status"] == "incomplete"

    refused = render(completion({"content": None, "refusal": "I cannot."}))
    assert refused["output"][0]["content"] == [{"type": "refusal", "refusal": "I cannot."}]


def test_namespaced_and_custom_calls_come_back_under_their_own_names() -> None:
    request = {
        "model": "smart",
        "input": "Hi",
        "tools": [
            {
                "type": "namespace",
                "name": "ma",
                "description": "d",
                "tools": [{"type": "function", "name": "spawn_agent"}],
            },
            {"type": "custom", "name": "apply_patch"},
        ],
    }
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "ma__spawn_agent", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input": "*** Begin"}'}},
    ]
    spawn, patch = render(completion({"content": None, "tool_calls": calls}, "tool_calls"), request)["output"]
    assert (spawn["type"], spawn["name"], spawn["namespace"]) == ("function_call", "spawn_agent", "ma")
    assert (patch["type"], patch["name"], patch["input"], patch["call_id"]) == (
        "custom_tool_call",
        "apply_patch",
        "*** Begin",
        "c2",
    )


# --- usage -----------------------------------------------------------------------------------

COUNTS = st.integers(min_value=0, max_value=10**9)


@given(prompt=COUNTS, completion=COUNTS, cached=COUNTS, reasoning=COUNTS)
def test_usage_maps_both_ways_without_loss(prompt: int, completion: int, cached: int, reasoning: int) -> None:
    internal = openai_usage(prompt=prompt, completion=completion, cached=cached, reasoning=reasoning)
    responses = usage_to_responses(internal)
    assert responses["total_tokens"] == prompt + completion
    assert usage_from_responses(responses) == internal


def test_usage_from_responses_counts_the_cached_and_reasoning_tokens_inside_the_totals() -> None:
    reported = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 60},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 20},
        "total_tokens": 130,
    }
    assert usage_from_responses(reported) == openai_usage(prompt=100, completion=30, cached=60, reasoning=20)
    assert usage_from_responses({"input_tokens": "x", "output_tokens_details": None}) == openai_usage(
        prompt=0, completion=0
    )


# --- stream ----------------------------------------------------------------------------------


def stream(
    chunks: list[dict[str, Any]], *, request: dict[str, Any] | None = None, usage: Any = None, fail: str | None = None
) -> list[dict[str, Any]]:
    translation: Translation = responses_request_to_openai(
        request or {"model": "smart", "input": "Hi", "tools": [WEATHER]}
    )
    translator = OpenAIStreamToResponses(translation, response_id="resp_1", model="smart", created_at=7)
    events = [event for piece in chunks for event in translator.feed(piece)]
    usage = usage or openai_usage(prompt=12, completion=5)
    events += translator.fail(fail, usage, "0.5") if fail else translator.finish(usage, "0.5")
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


def accumulate(events: list[dict[str, Any]]) -> Any:
    """What the openai SDK's ``responses.stream`` makes of the events: it raises on a wrong order or shape."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[WEATHER], text_format=openai.omit)  # type: ignore[list-item]
    for raw in events:
        event = construct_type(type_=ResponseStreamEvent, value=json.loads(json.dumps(raw)))
        state.handle_event(event)  # type: ignore[arg-type]
    return state._completed_response


def test_a_text_stream_sends_the_events_in_openais_order() -> None:
    events = stream(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hello"}),
            chunk({"content": " there"}),
            chunk({}, "stop"),
        ]
    )

    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[6]["text"] == "Hello there"
    completed = events[-1]["response"]
    assert completed["usage"]["cost"] == "0.5"
    assert completed["output"][0]["content"][0]["text"] == "Hello there"
    response = accumulate(events)
    assert response.output_text == "Hello there"
    assert response.usage.input_tokens == 12


def test_a_tool_call_stream_sends_argument_deltas_and_the_whole_call() -> None:
    header = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    events = stream(
        [
            chunk({"content": "Looking."}),
            chunk({"tool_calls": [header]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    kinds = [event["type"] for event in events]
    assert kinds[kinds.index("response.output_item.done") + 1 :] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = events[-2]["item"]
    assert (done["type"], done["call_id"], done["name"], done["arguments"]) == (
        "function_call",
        "call_1",
        "weather",
        '{"city":"Paris"}',
    )
    assert events[-2]["output_index"] == 1
    response = accumulate(events)
    assert [item.type for item in response.output] == ["message", "function_call"]
    assert response.output[1].parsed_arguments == {"city": "Paris"}


def test_parallel_calls_each_get_an_item_of_their_own() -> None:
    calls = [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"A"}'}},
        {"index": 1, "id": "c2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"B"}'}},
    ]
    events = stream([chunk({"tool_calls": [calls[0]]}), chunk({"tool_calls": [calls[1]]}), chunk({}, "tool_calls")])
    done = [event["item"] for event in events if event["type"] == "response.output_item.done"]
    assert [(item["call_id"], item["arguments"]) for item in done] == [("c1", '{"city":"A"}'), ("c2", '{"city":"B"}')]
    assert len(accumulate(events).output) == 2


def test_reasoning_then_text_and_a_refusal_stream_as_their_own_parts() -> None:
    events = stream(
        [
            chunk({"reasoning_content": "Think."}),
            chunk({"content": "Yes"}),
            chunk({"refusal": "but no."}),
            chunk({}, "stop"),
        ]
    )
    kinds = [event["type"] for event in events]
    assert "response.reasoning_text.delta" in kinds and "response.refusal.delta" in kinds
    final = events[-1]["response"]["output"]
    assert final[0]["content"] == [{"type": "reasoning_text", "text": "Think."}]
    assert [part["type"] for part in final[1]["content"]] == ["output_text", "refusal"]
    assert accumulate(events).output_text == "Yes"


def test_a_cut_stream_ends_incomplete_and_a_failed_one_failed() -> None:
    cut = stream([chunk({"content": "Once"}), chunk({}, "length")])
    assert cut[-1]["type"] == "response.incomplete"
    assert cut[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}

    failed = stream([chunk({"content": "Once"})], fail="The upstream provider failed mid-stream.")
    assert failed[-1]["type"] == "response.failed"
    assert failed[-1]["response"]["error"] == {
        "code": "server_error",
        "message": "The upstream provider failed mid-stream.",
    }
    assert failed[-1]["response"]["usage"]["cost"] == "0.5"


def test_a_custom_tool_call_streams_its_input_whole() -> None:
    request = {"model": "smart", "input": "Hi", "tools": [{"type": "custom", "name": "apply_patch"}]}
    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "apply_patch", "arguments": '{"input": "P"}'},
    }
    events = stream([chunk({"tool_calls": [call]}), chunk({}, "tool_calls")], request=request)
    kinds = [event["type"] for event in events]
    assert "response.custom_tool_call_input.done" in kinds and "response.function_call_arguments.delta" not in kinds
    assert events[-2]["item"] == {**events[-2]["item"], "type": "custom_tool_call", "input": "P", "call_id": "c1"}
