"""The README's first command brings up a working OneFlow, as a newcomer would run it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.http import call

ROOT = Path(__file__).resolve().parent.parent
KEY_LINE = re.compile(r"^of_live_[A-Za-z0-9]{12}_[A-Za-z0-9]{32}$")


def readme_commands() -> list[str]:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    return [block.strip() for block in blocks[:2]]


def test_the_readme_starts_with_one_line_run_and_test_commands() -> None:
    run, test = readme_commands()
    assert "\n" not in run
    assert "\n" not in test
    assert run == "./scripts/run"
    assert test == "./scripts/test"


@pytest.fixture
def embedded_oneflow(tmp_path: Path):
    """Runs the README's first command on the embedded default, on a free port."""
    unset = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "OPENAI_API_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    port = free_port()
    env.update(SQLITE_PATH=str(tmp_path / "oneflow.sqlite3"), PORT=str(port))
    process = subprocess.Popen(  # noqa: S602 - the README's own command, run as a user would
        readme_commands()[0],
        shell=True,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def read_until_key(process: subprocess.Popen[str], timeout: float = 300) -> tuple[str, list[str]]:
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if KEY_LINE.match(lines[-1]):
            return lines[-1], lines
    raise AssertionError("no API key line in:\n" + "\n".join(lines))


def wait_ready(base_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if call(base_url, "GET", "/readyz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("/readyz never answered 200")


def test_the_run_command_serves_oneflow_with_a_working_demo_key(embedded_oneflow) -> None:
    process, base_url = embedded_oneflow
    key, lines = read_until_key(process)
    assert any("admin@oneflow.local" in line for line in lines), lines
    assert any(f"{base_url}/dashboard/" in line for line in lines), lines
    wait_ready(base_url)

    assert call(base_url, "GET", "/v1/models", headers={"Authorization": f"Bearer {key}"}).status == 200
    chat = call(
        base_url,
        "POST",
        "/v1/chat/completions",
        body=b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}',
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert chat.status == 200, chat.body
    assert chat.json()["choices"][0]["message"]["content"]
    assert chat.headers["x-oneflow-provider"] == "Simulator"
    assert call(base_url, "GET", "/v1/models", headers={"Authorization": "Bearer of_live_nope"}).status == 401
    assert call(base_url, "GET", "/admin/login/").status == 200
    assert call(base_url, "GET", "/signin").status == 200
    assert call(base_url, "GET", "/static/admin/css/base.css").status == 200
