"""Coding agents, unmodified, through OneFlow (issue 13).

Claude Code, pinned by clients/package-lock.json, runs in print mode against the live
gateway with only its documented environment changed (ANTHROPIC_BASE_URL, the key).
The embedded test command skips these tests when the client is not installed; .ci/run
installs it (npm ci in clients/) and there a missing client fails them instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from billing.models import Price
from oneflow.lib import money
from providers.models import Provider
from tests.fakes import Behave, FakeUpstream, RecordedRequest
from tests.fakes.tap import tap_app
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route

CLIENTS = Path(__file__).resolve().parents[2] / "clients" / "node_modules" / ".bin"


def client_binary(name: str) -> Path:
    binary = CLIENTS / name
    if not os.access(binary, os.X_OK):
        reason = f"{name} is not installed: run `npm ci` in clients/ (.ci/run does)"
        if os.environ.get("ONEFLOW_CLIENTS_REQUIRED"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def agent_env(gateway: Gateway, home: Path, *, base_url: str | None = None) -> dict[str, str]:
    """The environment a user sets to point the agent at OneFlow, and nothing that reaches past loopback."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url or gateway.server.url,
        "ANTHROPIC_API_KEY": gateway.key.raw,
        # Telemetry, error reports and update checks would leave this machine.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def test_claude_code_answers_through_oneflow_and_the_call_is_billed(gateway: Gateway, tmp_path: Path) -> None:
    claude = client_binary("claude")

    done = subprocess.run(  # noqa: S603 - the pinned client, talking to the test's own server
        [str(claude), "-p", "Say hello", "--model", "gpt-4o-mini"],
        env=agent_env(gateway, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    events = [event for event in gateway.events() if event.endpoint == "messages"]
    assert events, "Claude Code's turn reached /v1/messages"
    assert all(event.status_code == 200 for event in events)
    assert sum(event.charged for event in events) > 0, "and was billed"
    assert done.stdout.strip(), "the answer is printed"


def run_claude(
    gateway: Gateway, home: Path, *args: str, base_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the pinned client, talking to the test's own servers
        [str(client_binary("claude")), "-p", *args],
        env=agent_env(gateway, home, base_url=base_url),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def tap(gateway: Gateway) -> Iterator[FakeUpstream]:
    """A recorder between the agent and OneFlow: what the agent really sent."""
    with FakeUpstream(app=tap_app(gateway.server.url)) as recorder:
        yield recorder


def messages_bodies(requests: list[RecordedRequest]) -> list[dict[str, Any]]:
    return [r.json for r in requests if r.method == "POST" and r.path == "/v1/messages"]


def test_claude_code_through_oneflow_to_anthropic_reaches_it_unchanged_and_cache_use_is_billed_exactly(
    gateway: Gateway, upstream: FakeUpstream, tap: FakeUpstream, tmp_path: Path
) -> None:
    route(upstream, Provider.Kind.ANTHROPIC)
    upstream.script(*[Behave(cached_tokens=7, cache_write_5m_tokens=3, cache_write_1h_tokens=2)] * 20)

    done = run_claude(gateway, tmp_path, "Say hello", "--model", "smart", base_url=tap.url)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "Hello from the fake upstream." in done.stdout
    sent, received = messages_bodies(tap.requests), messages_bodies(upstream.requests)
    assert sent, "Claude Code called /v1/messages"
    # Every body reached Anthropic as Claude Code wrote it, but for the deployment's model name.
    as_sent = sorted(json.dumps({**body, "model": "claude-sonnet-4"}, sort_keys=True) for body in sent)
    assert as_sent == sorted(json.dumps(body, sort_keys=True) for body in received)
    turn = next(body for body in received if body.get("stream"))
    assert any("cache_control" in block for block in turn["system"]), "cache_control reached Anthropic"
    assert "thinking" in turn or "context_management" in turn or "output_config" in turn
    agent_betas = {r.headers.get("anthropic-beta") for r in tap.requests if r.path == "/v1/messages"}
    assert agent_betas <= {r.headers.get("anthropic-beta") for r in upstream.requests}, "betas forwarded"
    price = Price.objects.get(public_model="smart")
    for event in gateway.events():
        if event.endpoint != "messages" or event.status_code != 200:
            continue
        assert (event.cached_tokens, event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (7, 3, 2)
        uncached = event.prompt_tokens - 7 - 3 - 2
        usd = (
            uncached * price.input_per_1m
            + 7 * price.cached_input_per_1m
            + 3 * price.cache_write_5m_per_1m
            + 2 * price.cache_write_1h_per_1m
            + event.completion_tokens * price.output_per_1m
        ) / Decimal(1_000_000)
        assert event.charged == money.internal(usd * settings.CREDITS_PER_USD), "each class at its rate, exactly"


def test_claude_code_through_oneflow_to_an_openai_upstream_runs_a_tool_and_sends_its_result_back(
    gateway: Gateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    route(upstream, Provider.Kind.OPENAI)
    notes = tmp_path / "notes.txt"
    notes.write_text("The secret word is marmalade.\n")
    upstream.script(Behave(tool_call={"name": "Read", "arguments": {"file_path": str(notes)}}))

    done = run_claude(gateway, tmp_path, "What is in notes.txt?", "--model", "smart", "--allowedTools", "Read")

    assert done.returncode == 0, done.stderr[-2000:]
    assert "Hello from the fake upstream." in done.stdout
    first, second = [r.json for r in upstream.requests if r.path == "/v1/chat/completions"]
    assert any(tool["function"]["name"] == "Read" for tool in first["tools"]), "Claude Code's tools, translated"
    call, result = second["messages"][-2:]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"]["name"] == "Read"
    assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"]
    assert "marmalade" in result["content"], "the tool's output went back to the model"
    assert [event.status_code for event in gateway.events()] == [200, 200]
