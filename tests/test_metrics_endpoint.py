"""/metrics is for Prometheus only: hidden on the user-traffic port in production
(or behind METRICS_TOKEN), served on a port of its own by gunicorn, summed over the
workers, and scrapable by pod IP whatever ALLOWED_HOSTS says."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import override_settings

from tests.conftest import LiveAsgiServer, free_port, gunicorn_serving
from tests.http import Reply, call

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-token-0123456789abcdef0123456789"
POD_IP = "10.1.2.3"


@contextmanager
def serving(**overrides: object) -> Iterator[LiveAsgiServer]:
    """OneFlow's whole ASGI application, built under these settings."""
    from oneflow.asgi import build

    with override_settings(ONEFLOW_EMBEDDED_BEAT=False, **overrides), LiveAsgiServer(build()) as server:
        yield server


def scrape(url: str, **headers: str) -> Reply:
    return call(url, "GET", "/metrics", headers={"Host": f"{POD_IP}:8000", **headers})


def test_production_answers_404_for_metrics_on_the_public_port(transactional_db: None) -> None:
    with serving(PRODUCTION=True, METRICS_TOKEN="") as server:
        for host in (f"{POD_IP}:8000", "localhost"):
            reply = call(server.url, "GET", "/metrics", headers={"Host": host})
            assert reply.status == 404, host
            assert b"oneflow_" not in reply.body


def test_a_metrics_token_admits_only_its_bearer_on_any_host(transactional_db: None) -> None:
    with serving(PRODUCTION=True, METRICS_TOKEN=TOKEN) as server:
        missing = scrape(server.url)
        wrong = scrape(server.url, Authorization="Bearer not-the-token")
        right = scrape(server.url, Authorization=f"Bearer {TOKEN}")

    for refused in (missing, wrong):
        assert refused.status == 401
        assert refused.headers["www-authenticate"].startswith("Bearer ")
        assert b"oneflow_" not in refused.body
    assert right.status == 200, "a pod IP is not in ALLOWED_HOSTS, and need not be"
    assert right.headers["content-type"].startswith("text/plain")
    assert b"# HELP oneflow_requests_total" in right.body


def test_outside_production_loopback_reads_metrics_without_a_token(transactional_db: None) -> None:
    with serving(PRODUCTION=False, METRICS_TOKEN="") as server:
        local = scrape(server.url)
        # uvicorn believes X-Forwarded-For from loopback: a public client behind a
        # reverse proxy on the same host is not a loopback peer.
        proxied = scrape(server.url, **{"X-Forwarded-For": "203.0.113.7"})
    assert local.status == 200
    assert b"# HELP oneflow_requests_total" in local.body
    assert proxied.status == 404


# gunicorn as production runs it: the metrics port ---------------------------------------


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """gunicorn with deploy/gunicorn.conf.py and two workers, production settings;
    yields the user-traffic URL and the metrics URL."""
    port, metrics_port = free_port(), free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "METRICS_"))}
    env = {
        **inherited,
        "ONEFLOW_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "METRICS_PORT": str(metrics_port),
        "METRICS_ADDR": "127.0.0.1",
        # No beat thread: the database of this server has no tables, and needs none.
        "ONEFLOW_EMBEDDED_BEAT": "false",
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
    }
    with gunicorn_serving(env, port) as url:
        yield url, f"http://127.0.0.1:{metrics_port}"


COUNTED = re.compile(
    r'^oneflow_requests_total\{endpoint="chat",model="other",provider="none",status_class="4xx"\} (\S+)$', re.M
)


def test_gunicorn_serves_every_workers_metrics_on_the_metrics_port_only(
    gunicorn: tuple[str, str], tmp_path: Path
) -> None:
    url, metrics_url = gunicorn
    assert call(url, "GET", "/metrics", headers={"Host": "localhost"}).status == 404

    # Requests the gateway counts without a database: a body that is not JSON.
    def send(_: int) -> int:
        return call(url, "POST", "/v1/chat/completions", body=b"not json", headers={"Host": "localhost"}).status

    sent = 0
    writers: set[str] = set()
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Until both workers have served some: the kernel picks which one accepts.
        while len(writers) < 2 and sent < 800:
            assert set(pool.map(send, range(40))) == {400}
            sent += 40
            writers = {path.name for path in (tmp_path / "prometheus").glob("counter_*.db")}
    assert len(writers) == 2, writers

    scraped = scrape(metrics_url, Host=f"{POD_IP}:9100")
    assert scraped.status == 200, "a pod IP as Host; no ALLOWED_HOSTS check on this port"
    counted = COUNTED.search(scraped.body.decode())
    assert counted is not None, scraped.body[:2000]
    assert float(counted.group(1)) == sent, "the sum over both workers"
