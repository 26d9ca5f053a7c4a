"""Liveness and readiness probes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from oneflow.lib import redis

ROOT = Path(__file__).resolve().parent.parent


def test_healthz_answers_while_the_process_is_alive(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_database_and_redis_answer(client: Client, db: None) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.fixture
def unreachable_redis():
    redis.sync_client.cache_clear()
    # Nothing listens on port 1: the connection is refused at once.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        yield
    redis.sync_client.cache_clear()


def test_readyz_is_503_naming_redis_when_it_is_down(client: Client, db: None, unreachable_redis: None) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "failed"}}


def test_readyz_is_503_naming_the_database_when_it_is_down() -> None:
    script = (
        "import django; django.setup();"
        "from django.test import Client; r = Client().get('/readyz');"
        "print(r.status_code, r.content.decode())"
    )
    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "DB_POOL": "false"}
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("503 "), result.stdout + result.stderr
    assert '"database": "failed"' in last_line
    assert '"redis": "ok"' in last_line
