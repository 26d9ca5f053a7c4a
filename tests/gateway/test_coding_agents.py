"""Coding agents, unmodified, through OneFlow (issue 13).

Claude Code, pinned by clients/package-lock.json, runs in print mode against the live
gateway with only its documented environment changed (ANTHROPIC_BASE_URL, the key).
The embedded test command skips these tests when the client is not installed; .ci/run
installs it (npm ci in clients/) and there a missing client fails them instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.gateway.conftest import Gateway

CLIENTS = Path(__file__).resolve().parents[2] / "clients" / "node_modules" / ".bin"


def client_binary(name: str) -> Path:
    binary = CLIENTS / name
    if not os.access(binary, os.X_OK):
        reason = f"{name} is not installed: run `npm ci` in clients/ (.ci/run does)"
        if os.environ.get("ONEFLOW_CLIENTS_REQUIRED"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def agent_env(gateway: Gateway, home: Path) -> dict[str, str]:
    """The environment a user sets to point the agent at OneFlow, and nothing that reaches past loopback."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.server.url,
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
