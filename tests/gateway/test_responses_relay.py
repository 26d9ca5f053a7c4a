"""/v1/responses to an OpenAI deployment is a relay (issue 13 item 3): the upstream gets the
client's body unchanged but for the model name (and ``store: false``), and the client gets
the upstream's answer unchanged but for what OneFlow adds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from providers.models import Deployment, Provider
from tests.fakes import DEFAULT_REPLY, Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route
from tests.gateway.test_anthropic_relay import sse_events
from tests.gateway.test_codex_cli import ECHO, codex_exec
from tests.gateway.test_responses_api import post

# What Codex CLI sends (PROTOCOLS.md §2.3), with an item kind and a field OneFlow has never seen.
CODEX_BODY: dict[str, Any] = {
    "model": "smart",
    "instructions": "You are Codex.",
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: read-only."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-opaque"},
        {"type": "item_reference", "id": "msg_earlier"},
    ],
    "tools": [{"type": "web_search"}, {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "session-1",
    "client_metadata": {"originator": "codex_exec"},
    "a_field_from_next_month": True,
}


@pytest.fixture
def openai(gateway: Gateway, upstream: FakeUpstream) -> FakeUpstream:
    route(upstream, Provider.Kind.OPENAI)
    return upstream


def test_the_upstream_gets_the_clients_body_with_store_off(gateway: Gateway, openai: FakeUpstream) -> None:
    answer = post(gateway, CODEX_BODY)
    assert answer.status == 200, answer.body.decode()
    [received] = openai.requests
    assert received.path == "/v1/responses"
    assert received.json == {**CODEX_BODY, "model": "gpt-4o-mini", "store": False}


def test_the_answer_comes_back_as_sent_and_its_token_classes_are_recorded(
    gateway: Gateway, openai: FakeUpstream
) -> None:
    openai.script(Behave(cached_tokens=3, reasoning_tokens=4))
    answer = post(gateway, CODEX_BODY)
    response = answer.json()
    assert response["object"] == "response" and response["model"] == "smart"
    [message] = [item for item in response["output"] if item["type"] == "message"]
    assert message["content"][0]["text"] == DEFAULT_REPLY
    usage = response["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == 3
    assert usage["output_tokens_details"]["reasoning_tokens"] == 4
    [event] = gateway.events()
    assert (event.endpoint, event.usage_source) == ("responses", "reported")
    assert (event.prompt_tokens, event.cached_tokens) == (usage["input_tokens"], 3)
    assert (event.completion_tokens, event.reasoning_tokens) == (usage["output_tokens"], 4)
    assert str(event.charged) == answer.headers["x-oneflow-cost"]


def test_a_relayed_stream_ends_with_the_cost_on_its_terminal_event(gateway: Gateway, openai: FakeUpstream) -> None:
    answer = post(gateway, {**CODEX_BODY, "stream": True})
    events = sse_events(answer.body.decode())
    names = [name for name, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert [data["sequence_number"] for _, data in events] == list(range(len(events))), "as the upstream numbered"
    assert all(data["response"]["model"] == "smart" for _, data in events if "response" in data)
    text = "".join(data["delta"] for name, data in events if name == "response.output_text.delta")
    assert text == DEFAULT_REPLY
    final = events[-1][1]["response"]["usage"]
    [event] = gateway.events()
    assert final["cost"] == str(event.charged)
    assert event.completion_tokens == final["output_tokens"]


def test_an_upstream_error_mid_stream_ends_it_with_response_failed(gateway: Gateway, openai: FakeUpstream) -> None:
    openai.script(Behave(stream_error=True))
    events = sse_events(post(gateway, {**CODEX_BODY, "stream": True}).body.decode())
    assert events[-1][0] == "response.failed"
    assert events[-1][1]["sequence_number"] == events[-2][1]["sequence_number"] + 1
    [event] = gateway.events()
    assert event.status_code == 502


def test_a_body_only_openai_understands_is_refused_clearly_by_a_translating_deployment(
    gateway: Gateway, openai: FakeUpstream
) -> None:
    Deployment.objects.filter(public_model__name="smart").update(enabled=False)
    simulator = Provider.objects.get(kind=Provider.Kind.SIMULATOR)
    smart = Deployment.objects.filter(public_model__name="smart").first()
    assert smart is not None
    Deployment.objects.create(public_model_id=smart.public_model_id, provider=simulator, upstream_model="sim")
    answer = post(gateway, CODEX_BODY)
    assert answer.status == 400
    assert "item_reference" in answer.json()["error"]["message"]
    assert openai.requests == []


@pytest.mark.clients
def test_codex_through_oneflow_to_openai_is_passed_through_a_function_call_included(
    gateway: Gateway, openai: FakeUpstream, tmp_path: Path
) -> None:
    openai.script(ECHO)

    done = codex_exec(tmp_path, "Run echo codex-was-here, then say hello", base_url=gateway.url, key=gateway.key.raw)

    assert done.returncode == 0, done.stderr[-3000:]
    assert DEFAULT_REPLY in done.stdout
    first, second = openai.requests
    assert first.path == second.path == "/v1/responses", "relayed, not translated"
    assert first.json["include"] == ["reasoning.encrypted_content"]
    [call] = [item for item in second.json["input"] if item.get("type") == "function_call"]
    [output] = [item for item in second.json["input"] if item.get("type") == "function_call_output"]
    assert call["name"] == "exec_command" and output["call_id"] == call["call_id"]
    assert "codex-was-here" in json.dumps(output["output"])
    assert [event.endpoint for event in gateway.events()] == ["responses", "responses"]
