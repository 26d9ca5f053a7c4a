"""Shared personas and fixtures.

Personas: alice owns Acme; bob is a plain member of Acme; carol belongs to no
organization. Passwords are real bcrypt hashes, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Membership, Organization, User
from accounts.tokens import RefreshToken
from gateway.asgi import GatewayApp
from gateway.core import Gateway
from oneflow.celery import app as celery_app
from tests.factories import (
    PASSWORD,
    ApiKeyFactory,
    MembershipFactory,
    OperatorFactory,
    OrganizationFactory,
    UserFactory,
)
from tests.fakes import FakeUpstream
from tests.http import call

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _keep_seeded_rows(django_db_serialized_rollback: None) -> None:
    """Transactional tests empty every table when they end; this restores what
    migrations seeded (prices, beat schedules) for the tests after them."""


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Rate-limit counters live in the cache; each test starts with none."""
    cache.clear()
    yield


@pytest.fixture
def operator(db: None) -> User:
    return OperatorFactory.create(email="ops@oneflow.local")


@pytest.fixture
def as_operator(client: Client, operator: User) -> Client:
    client.force_login(operator)
    return client


@pytest.fixture
def alice(db: None) -> User:
    return UserFactory.create(email="alice@example.com", password=PASSWORD, full_name="Alice Owner")


@pytest.fixture
def bob(db: None) -> User:
    return UserFactory.create(email="bob@example.com", password=PASSWORD, full_name="Bob Member")


@pytest.fixture
def carol(db: None) -> User:
    return UserFactory.create(email="carol@example.com", password=PASSWORD, full_name="Carol Outsider")


@pytest.fixture
def acme(alice: User, bob: User) -> Organization:
    organization = OrganizationFactory.create(name="Acme", owner=alice)
    MembershipFactory.create(organization=organization, user=bob, role=Membership.Role.MEMBER)
    return organization


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return client_for(None)


@pytest.fixture
def as_alice(alice: User) -> APIClient:
    return client_for(alice)


@pytest.fixture
def as_bob(bob: User) -> APIClient:
    return client_for(bob)


@pytest.fixture
def as_carol(carol: User) -> APIClient:
    return client_for(carol)


@pytest.fixture
def acme_key(acme: Organization, alice: User) -> services.IssuedSecret:
    return ApiKeyFactory.create(organization=acme, name="ci", created_by=alice)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveAsgiServer:
    """OneFlow's real ASGI application under uvicorn, in a thread of the test process.

    ``proxy``: the /v1 app inside ``app`` when the test built it (its gateway is
    ``proxy.gateway`` while the server runs); ``on_loop`` runs a coroutine on
    the server's event loop, where that gateway lives.
    """

    def __init__(self, app: Any, *, proxy: GatewayApp | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proxy = proxy
        self.loop: asyncio.AbstractEventLoop | None = None
        config = uvicorn.Config(
            self._noting_loop(app), host="127.0.0.1", port=self.port, lifespan="on", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def _noting_loop(self, app: Any) -> Any:
        async def noting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                self.loop = asyncio.get_running_loop()
            await app(scope, receive, send)

        return noting

    def on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=10)

    @property
    def gateway(self) -> Gateway:
        assert self.proxy is not None and self.proxy.gateway is not None, "no gateway of the test's own is running"
        return self.proxy.gateway

    def __enter__(self) -> LiveAsgiServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_asgi(transactional_db: None) -> Iterator[LiveAsgiServer]:
    """The whole application under uvicorn with a /v1 app (and so a gateway) of the test's own."""
    from oneflow.asgi import build

    proxy = GatewayApp()
    # Tests drain usage themselves; a beat thread would race them for the database.
    with override_settings(ONEFLOW_EMBEDDED_BEAT=False), LiveAsgiServer(build(proxy), proxy=proxy) as server:
        yield server


@contextlib.contextmanager
def gunicorn_serving(env: dict[str, str], port: int) -> Iterator[str]:
    """OneFlow under gunicorn as production runs it (deploy/gunicorn.conf.py) on
    ``port`` with ``env``; yields its URL once it answers, stops it after."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    process = subprocess.Popen(  # noqa: S603 - our own server
        [*command, "oneflow.asgi:application"], cwd=root, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if call(url, "GET", "/healthz", headers={"Host": "localhost"}).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def live_services() -> None:
    """Skips unless the suite runs against real PostgreSQL and Redis (as in CI)."""
    if not (settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")):
        pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL")


# The API key the fake upstream providers expect from the gateway.
UPSTREAM_KEY = "sk-upstream-secret-0123456789"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """A fake provider speaking the OpenAI and Anthropic wire formats over HTTP."""
    with FakeUpstream(api_key=UPSTREAM_KEY) as up:
        yield up


@pytest.fixture
def celery_worker(live_services: None, transactional_db: None) -> Iterator[None]:
    """A real Celery worker consuming from the Redis broker of REDIS_URL."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            yield
    finally:
        celery_app.conf.task_always_eager = eager


# The slow groups (markers in pyproject.toml), set here rather than on each test so
# that `-m "not (...)"` gives a fast run (README). Whole files by their path under
# tests/; live servers also by the fixtures that start them, wherever they are used.
SLOW_FILES = {
    "browser/": "browser",
    "test_admin_scale.py": "scale",
    "gateway/test_openai_sdk.py": "clients",
    "gateway/test_anthropic_sdk.py": "clients",
    "gateway/test_coding_agents.py": "clients",
    "gateway/test_v1_fuzz.py": "fuzz",
    "test_schemathesis.py": "fuzz",
    # These start their servers in their own bodies or fixtures, not through one below.
    "test_metrics_endpoint.py": "live_server",
    "test_slow_clients.py": "live_server",
}
LIVE_SERVER_FIXTURES = {"live_asgi", "gunicorn", "embedded_oneflow"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        where = item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else ""
        marks = {mark for prefix, mark in SLOW_FILES.items() if where.startswith(prefix)}
        if LIVE_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            marks.add("live_server")
        for mark in sorted(marks):
            item.add_marker(mark)
