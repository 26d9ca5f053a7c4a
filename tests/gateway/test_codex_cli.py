"""Codex CLI, unmodified, through OneFlow's ``/v1/responses`` (issue 13).

Codex CLI, pinned by clients/package-lock.json, runs ``codex exec`` against the live
gateway with what a user writes in ``~/.codex/config.toml`` to point it at OneFlow (a
model provider with OneFlow's base URL and the environment variable holding the key),
and settings that keep it on this machine: no update check, no analytics or feedback,
no plugin marketplace sync, and a dead proxy for anything but loopback. Its requests are
translated for a Chat Completions and an Anthropic deployment (fake upstreams); and the
fake Responses upstream, which the pass-through path is tested against, is checked to be
one Codex itself works with.

Skipped when the client is not installed (``npm ci`` in clients/); with
ONEFLOW_CLIENTS_REQUIRED set (.ci/run) a missing client fails instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from providers.models import Provider
from tests.conftest import UPSTREAM_KEY
from tests.fakes import DEFAULT_REPLY, Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_coding_agents import client_binary
from tests.gateway.test_responses_api import KINDS, deploy

pytestmark = pytest.mark.clients

KEY_VARIABLE = "ONEFLOW_API_KEY"
# Nothing listens on port 9 (discard): a request that would leave loopback fails at once.
DEAD_PROXY = "http://127.0.0.1:9"


def codex_home(home: Path, *, base_url: str, model: str) -> None:
    """``~/.codex/config.toml`` as a user writes it for OneFlow (docs/clients.md, "Codex CLI")."""
    config = f"""
model = "{model}"
model_provider = "oneflow"
# Updates are the test's lock file's business.
check_for_update_on_startup = false

[model_providers.oneflow]
name = "OneFlow"
base_url = "{base_url}"
env_key = "{KEY_VARIABLE}"
wire_api = "responses"

# Usage analytics and feedback go to chatgpt.com; the plugin marketplace is a git clone from github.com.
[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
"""
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(config)


def codex_exec(
    tmp_path: Path, prompt: str, *, base_url: str, key: str, model: str = "smart"
) -> subprocess.CompletedProcess[str]:
    """``codex exec``: no approvals asked, the model's commands sandboxed read-only, no session kept."""
    codex = client_binary("codex")
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    codex_home(home, base_url=base_url, model=model)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        KEY_VARIABLE: key,
        "HTTPS_PROXY": DEAD_PROXY,
        "HTTP_PROXY": DEAD_PROXY,
        "ALL_PROXY": DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    flags = ["--skip-git-repo-check", "--ephemeral", "--sandbox", "read-only", "--color", "never"]
    return subprocess.run(  # noqa: S603 - the pinned client, talking to the test's own servers
        [str(codex), "exec", *flags, prompt],
        env=env,
        cwd=work,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def through_oneflow(gateway: Gateway, tmp_path: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    return codex_exec(tmp_path, prompt, base_url=gateway.url, key=gateway.key.raw)


ECHO = Behave(tool_call={"name": "exec_command", "arguments": {"cmd": "echo codex-was-here"}})


@pytest.mark.parametrize("kind", [Provider.Kind.OPENAI_COMPATIBLE, Provider.Kind.ANTHROPIC])
def test_codex_answers_through_a_translating_deployment_and_the_turn_is_billed(
    gateway: Gateway, upstream: FakeUpstream, tmp_path: Path, kind: str
) -> None:
    deploy(upstream, kind)

    done = through_oneflow(gateway, tmp_path, "Say hello")

    assert done.returncode == 0, done.stderr[-3000:]
    assert DEFAULT_REPLY in done.stdout
    [sent] = upstream.requests
    assert sent.path == KINDS[kind][3], "Chat Completions, or Anthropic Messages"
    assert sent.json["stream"] is True
    assert "Say hello" in json.dumps(sent.json["messages"][-1])
    [event] = gateway.events()
    assert (event.endpoint, event.stream, event.status_code) == ("responses", True, 200)
    assert event.charged > 0


def test_codex_runs_a_function_call_and_sends_its_output_back(
    gateway: Gateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    deploy(upstream)
    upstream.script(ECHO)

    done = through_oneflow(gateway, tmp_path, "Run echo codex-was-here, then say hello")

    assert done.returncode == 0, done.stderr[-3000:]
    assert DEFAULT_REPLY in done.stdout
    first, second = upstream.requests
    assert "exec_command" in [tool["function"]["name"] for tool in first.json["tools"]]
    # The second request holds the call Codex was asked to make, and what came of it.
    assistant, output = second.json["messages"][-2:]
    [call] = assistant["tool_calls"]
    assert call["function"]["name"] == "exec_command"
    assert json.loads(call["function"]["arguments"]) == {"cmd": "echo codex-was-here"}
    assert output["role"] == "tool"
    assert output["tool_call_id"] == call["id"]
    assert "codex-was-here" in output["content"], "the command ran, and its output reached the model"
    assert [event.endpoint for event in gateway.events()] == ["responses", "responses"]


# --- the fake Responses upstream, which the pass-through tests use, works with Codex itself ---


def test_codex_works_with_the_fake_responses_upstream_a_function_call_included(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.script(ECHO)

    done = codex_exec(tmp_path, "Run echo codex-was-here", base_url=upstream.url + "/v1", key=UPSTREAM_KEY)

    assert done.returncode == 0, done.stderr[-3000:]
    assert DEFAULT_REPLY in done.stdout
    first, second = upstream.requests
    assert first.path == second.path == "/v1/responses"
    [call] = [item for item in second.json["input"] if item.get("type") == "function_call"]
    [output] = [item for item in second.json["input"] if item.get("type") == "function_call_output"]
    assert call["name"] == "exec_command"
    assert output["call_id"] == call["call_id"]
    assert "codex-was-here" in json.dumps(output["output"])
