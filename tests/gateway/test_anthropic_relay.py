"""/v1/messages to an Anthropic deployment is a relay (issue 13 item 1): the upstream gets
the client's body and protocol headers unchanged but for the model name, and the client
gets the upstream's answer unchanged but for what OneFlow adds."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from billing.models import UsageEvent
from providers.models import Deployment, Provider
from tests.fakes import Behave, FakeUpstream
from tests.fakes.anthropic_api import expected_prompt_tokens
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route
from tests.http import Reply, call

BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"

# What Claude Code sends (PROTOCOLS.md §2.3), with a block type and a field OneFlow has never seen.
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "smart",
    "max_tokens": 32000,
    "system": [
        {"type": "text", "text": "You are Claude Code."},
        {"type": "text", "text": "Project rules here.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Say hello", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": [{"type": "text", "text": "Reminder: be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Now."}, {"type": "container_upload", "file_id": "f1"}]},
    ],
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
    "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}}],
    "a_field_from_next_month": {"anything": [1, 2]},
}


def post(gateway: Gateway, body: dict[str, Any]) -> Reply:
    headers = {
        "x-api-key": gateway.key.raw,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": BETAS,
        "content-type": "application/json",
    }
    return call(gateway.server.url, "POST", "/v1/messages?beta=true", body=json.dumps(body).encode(), headers=headers)


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture
def anthropic(gateway: Gateway, upstream: FakeUpstream) -> FakeUpstream:
    route(upstream, Provider.Kind.ANTHROPIC)
    return upstream


def test_the_upstream_gets_the_clients_body_and_protocol_headers(gateway: Gateway, anthropic: FakeUpstream) -> None:
    sent = copy.deepcopy(CLAUDE_CODE_BODY)
    answer = post(gateway, sent)
    assert answer.status == 200, answer.body.decode()
    [received] = anthropic.requests
    assert received.path == "/v1/messages"
    assert received.json == {**CLAUDE_CODE_BODY, "model": "claude-sonnet-4"}
    assert received.headers["anthropic-beta"] == BETAS
    assert received.headers["anthropic-version"] == "2023-06-01"
    # The client's key stays with OneFlow; the upstream gets the deployment's.
    assert received.headers["x-api-key"] != gateway.key.raw


def test_the_answer_comes_back_as_the_upstream_sent_it(gateway: Gateway, anthropic: FakeUpstream) -> None:
    answer = post(gateway, CLAUDE_CODE_BODY)
    message = answer.json()
    assert message["model"] == "smart"  # the name the client asked for
    assert message["id"].startswith("msg_")
    assert message["content"] == [{"type": "text", "text": "Hello from the fake upstream."}]
    assert answer.headers["x-oneflow-provider"] == "fake-anthropic"
    [event] = gateway.events()
    assert event.prompt_tokens == expected_prompt_tokens({**CLAUDE_CODE_BODY, "model": "claude-sonnet-4"})
    assert event.completion_tokens == message["usage"]["output_tokens"]
    assert event.usage_source == UsageEvent.Source.REPORTED


def test_a_relayed_stream_is_the_upstreams_with_the_model_named_and_the_cost_added(
    gateway: Gateway, anthropic: FakeUpstream
) -> None:
    answer = post(gateway, {**CLAUDE_CODE_BODY, "stream": True})
    assert answer.status == 200, answer.body.decode()
    events = sse_events(answer.body.decode())
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert names[1:4] == ["content_block_start", "ping", "content_block_delta"]
    assert events[0][1]["message"]["model"] == "smart"
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == "Hello from the fake upstream."
    [delta] = [data for name, data in events if name == "message_delta"]
    [event] = gateway.events()
    assert delta["usage"]["cost"] == answer.headers.get("x-oneflow-cost", delta["usage"]["cost"])
    assert str(event.charged) == delta["usage"]["cost"]
    assert event.completion_tokens == delta["usage"]["output_tokens"]
    assert event.stream is True


def test_cache_reads_the_upstream_reports_are_billed_as_cache_reads(gateway: Gateway, anthropic: FakeUpstream) -> None:
    anthropic.script(Behave(cached_tokens=5))
    answer = post(gateway, CLAUDE_CODE_BODY)
    usage = answer.json()["usage"]
    assert usage["cache_read_input_tokens"] == 5
    [event] = gateway.events()
    assert event.cached_tokens == 5
    assert event.prompt_tokens == usage["input_tokens"] + 5


def test_a_failing_anthropic_deployment_falls_over_to_a_translating_one(
    gateway: Gateway, anthropic: FakeUpstream
) -> None:
    simulator = Provider.objects.get(kind=Provider.Kind.SIMULATOR)
    Deployment.objects.create(public_model_id=_smart_id(), provider=simulator, upstream_model="sim", priority=9)
    anthropic.script(*[Behave(status=529)] * 3)
    body = {key: value for key, value in CLAUDE_CODE_BODY.items() if key != "messages"}
    body["messages"] = [{"role": "user", "content": "Say hello"}]
    answer = post(gateway, body)
    assert answer.status == 200, answer.body.decode()
    assert answer.headers["x-oneflow-provider"] != "fake-anthropic"
    assert answer.json()["type"] == "message"


def test_a_body_only_anthropic_understands_is_refused_clearly_by_a_translating_deployment(
    gateway: Gateway, anthropic: FakeUpstream
) -> None:
    Deployment.objects.filter(public_model_id=_smart_id()).update(enabled=False)
    simulator = Provider.objects.get(kind=Provider.Kind.SIMULATOR)
    Deployment.objects.create(public_model_id=_smart_id(), provider=simulator, upstream_model="sim")
    answer = post(gateway, CLAUDE_CODE_BODY)
    assert answer.status == 400
    error = answer.json()
    assert error["type"] == "error"
    assert "container_upload" in error["error"]["message"]
    assert anthropic.requests == []


def test_an_error_event_mid_stream_reaches_the_client_as_an_error_event(
    gateway: Gateway, anthropic: FakeUpstream
) -> None:
    anthropic.script(Behave(cut_after=2, stream_error=True))
    answer = post(gateway, {**CLAUDE_CODE_BODY, "stream": True})
    events = sse_events(answer.body.decode())
    assert events[-1][0] == "error"
    assert "message_stop" not in [name for name, _ in events]
    [event] = gateway.events()
    assert event.status_code == 502


def _smart_id() -> int:
    return int(Deployment.objects.filter(public_model__name="smart").values_list("public_model_id", flat=True)[0])


def test_the_operators_betas_and_the_clients_add_up_and_the_clients_version_wins(
    gateway: Gateway, anthropic: FakeUpstream
) -> None:
    Provider.objects.filter(kind=Provider.Kind.ANTHROPIC).update(
        api_version="2023-01-01", extra_headers={"Anthropic-Beta": "context-1m-2025-08-07,claude-code-20250219"}
    )
    assert post(gateway, CLAUDE_CODE_BODY).status == 200
    [received] = anthropic.requests
    assert received.headers["anthropic-beta"] == "context-1m-2025-08-07,claude-code-20250219," + BETAS.split(",", 1)[1]
    assert received.headers["anthropic-version"] == "2023-06-01"


def test_a_cut_stream_keeps_the_prompt_the_upstream_reported_and_estimates_only_the_answer(
    gateway: Gateway, anthropic: FakeUpstream
) -> None:
    anthropic.script(Behave(cached_tokens=5, cache_write_1h_tokens=2, cut_after=2))
    events = sse_events(post(gateway, {**CLAUDE_CODE_BODY, "stream": True}).body.decode())
    assert events[-1][0] == "error"
    [event] = gateway.events()
    assert event.usage_source == UsageEvent.Source.ESTIMATED
    assert event.prompt_tokens == expected_prompt_tokens({**CLAUDE_CODE_BODY, "model": "claude-sonnet-4"})
    assert (event.cached_tokens, event.cache_write_1h_tokens) == (5, 2), "as message_start reported them"
    assert event.completion_tokens >= 2, "the two pieces the client was sent, at least"


@pytest.mark.parametrize("streamed", [False, True])
def test_server_tools_the_upstream_ran_are_recorded(gateway: Gateway, anthropic: FakeUpstream, streamed: bool) -> None:
    anthropic.script(Behave(server_tool_requests=2))
    assert post(gateway, {**CLAUDE_CODE_BODY, "stream": streamed}).status == 200
    [event] = gateway.events()
    assert event.server_tool_requests == 2
