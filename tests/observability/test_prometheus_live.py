"""The alerting end to end with the real tools, on loopback: Debian's Prometheus, with the
scrape config and rules of deploy/prometheus/, scrapes a production-shaped OneFlow
(gunicorn, two uvicorn workers, PostgreSQL, Redis, the metrics port) in front of a fake
upstream; the upstream starts failing, the error-rate alert fires from the scraped data,
and Alertmanager, with deploy/alertmanager/alertmanager.yml, pages a PagerDuty receiver
the test runs, with the severity and the runbook link, while the warning twin is
inhibited. Then every rule and dashboard query must evaluate without error, and the
dashboards are drawn as PNGs from what Prometheus holds.

Time runs faster than in production in one respect only: every rule's ``for:`` is divided
by 60 (5m becomes 5s; conftest.quicker), scrapes and evaluations happen every second,
and Alertmanager sends a group after 1 s instead of 30 s. Thresholds, windows, routes,
receivers, templates and inhibition are the files' own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlencode

import pytest
import yaml
from django.conf import settings
from django.db import connection

from accounts import services as accounts_services
from accounts.models import Organization
from billing.services import credits_grant
from oneflow.celery import app as celery_app
from oneflow.lib import redis_keys
from providers.models import Provider
from tests.conftest import free_port, gunicorn_serving
from tests.fakes import Behave, FakeUpstream
from tests.gateway.test_adapters import route
from tests.http import call
from tests.observability.conftest import (
    ROOT,
    RULE_FILES,
    RUNBOOK_BASE,
    alertmanager_config,
    binary,
    prometheus_config,
    quicker,
    rule_groups,
)
from tests.observability.render_dashboards import (
    DASHBOARDS,
    Prometheus,
    PrometheusError,
    expressions,
    render,
    substitute,
)
from tests.redis_state import fresh

pytestmark = pytest.mark.live_server

T = TypeVar("T")
LOTS = 1_000_000  # requests a minute: this test is about errors, not limits
PNG = b"\x89PNG\r\n\x1a\n"
# Where to keep the dashboards' PNGs besides tmp (e.g. bench/results/dashboards).
PNG_DIR = "ONEFLOW_DASHBOARD_PNGS"
ERROR_RATE = "OneFlowErrorRateHigh"
HEALTHY_SECONDS = 8
# The jobs whose figures the dashboards show, run every second as the worker runs what
# beat sends it (there is no Celery worker here); a job not registered is not run.
JOBS = ("billing.drain_usage", "billing.publish_business_metrics", "billing.reconcile_ledgers")
CHAT = {"model": "smart", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}

_fresh_breakers = fresh(redis_keys.BREAKER_PATTERN)


def until(what: str, found: Callable[[], T | None], *, timeout: float, logs: Sequence[Path] = ()) -> T:
    """Polls ``found`` until it returns something; fails naming ``what`` (and the logs' tails)."""
    deadline = time.monotonic() + timeout
    while True:
        result = found()
        if result:
            return result
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
            pytest.fail(f"no {what} within {timeout} s\n{tails}")
        time.sleep(0.25)


class Receiver:
    """An HTTP server on loopback that records every JSON body POSTed to it, by path: the
    PagerDuty Events API and the Slack webhook, as Alertmanager calls them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[tuple[str, dict[str, Any]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with recorder.lock:
                    recorder.posts.append((self.path, json.loads(body)))
                self.send_response(202)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for where, body in self.posts if where == path]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def serving(command: list[str], *, url: str, log: Path) -> Iterator[None]:
    """Runs ``command`` (its output in ``log``) until it answers ``url``/-/ready; stops it after."""
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
    try:
        until(f"{Path(command[0]).name} ready", lambda: _ready(url, process), timeout=30, logs=[log])
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        pytest.fail(f"{process.args!r} exited with {process.returncode}")
    try:
        return call(url, "GET", "/-/ready").status == 200
    except OSError:
        return False


@pytest.fixture
def tools() -> dict[str, str]:
    """The binaries, looked up before anything is started (a skip should cost nothing)."""
    return {
        "prometheus": binary("prometheus"),
        "alertmanager": binary("prometheus-alertmanager", "alertmanager"),
    }


@pytest.fixture
def key(live_services: None, transactional_db: None, upstream: FakeUpstream) -> str:
    """Acme's key, plenty of credits and no practical rate limit; the public model "smart"
    served by one OpenAI deployment on the fake upstream."""
    alice = accounts_services.user_create(email="alice@example.com", password="correct horse battery staple")
    acme = accounts_services.organization_create(name="Acme", owner=alice)
    Organization.objects.filter(pk=acme.pk).update(limit_rpm=LOTS, limit_rph=LOTS)
    credits_grant(organization=acme, amount=Decimal(1000), idempotency_key="grant")
    route(upstream, Provider.Kind.OPENAI, read_timeout=5)
    return accounts_services.api_key_create(organization=acme, name="ci", created_by=alice).raw


class Served(NamedTuple):
    url: str  # user traffic
    metrics: str  # host:port of the metrics port, as Prometheus's target


@pytest.fixture
def gunicorn(live_services: None, transactional_db: None, tmp_path: Path) -> Iterator[Served]:
    """OneFlow as production runs it (tests/test_production_shape.py), its metrics port
    on loopback."""
    port, metrics_port = free_port(), free_port()
    database = settings.DATABASES["default"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("METRICS_")},
        "ONEFLOW_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "ENCRYPTION_KEY": settings.ENCRYPTION_KEY,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        "METRICS_PORT": str(metrics_port),
        "METRICS_ADDR": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
        # Failures come back in milliseconds, so errors pile up quickly, and the breaker
        # opens after a few seconds of them rather than at once: both show on the dashboards.
        "UPSTREAM_RETRY_BASE_SECONDS": "0.01",
        "UPSTREAM_RETRY_MAX_SECONDS": "0.05",
        "BREAKER_CONSECUTIVE_FAILURES": "200",
        "BREAKER_MIN_SAMPLE": "100000",
    }
    with gunicorn_serving(env, port) as url:
        yield Served(url, f"127.0.0.1:{metrics_port}")


class Traffic:
    """Requests to /v1 from a few threads until stopped, streams among them."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.senders: list[Future[None]] = []

    def _send(self, number: int) -> None:
        body = {**CHAT, "stream": number % 3 == 0}
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            reply = call(self.url, "POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers=headers)
            self.statuses.append(reply.status)
            time.sleep(0.05)

    def __enter__(self) -> Traffic:
        self.senders = [self.pool.submit(self._send, number) for number in range(4)]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.pool.shutdown(wait=True)
        for sender in self.senders:
            sender.result()  # a sender that died says why


class Jobs:
    """The ``JOBS`` in a thread, once a second, until stopped."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        celery_app.loader.import_default_modules()  # the apps' tasks modules, as a worker loads them
        tasks = [celery_app.tasks[name] for name in JOBS if name in celery_app.tasks]
        try:
            while not self.stop.wait(1):
                for task in tasks:
                    task.apply()  # failures are the task's own, counted as the worker counts them
        finally:
            connection.close()

    def __enter__(self) -> Jobs:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def _alerts(prometheus: Prometheus, name: str) -> list[dict[str, Any]]:
    return [alert for alert in prometheus.get("/api/v1/alerts")["alerts"] if alert["labels"]["alertname"] == name]


def _managed(alertmanager: str, name: str) -> list[dict[str, Any]]:
    """The alerts Alertmanager holds under ``name`` (API v2), with their status."""
    reply = call(alertmanager, "GET", "/api/v2/alerts?" + urlencode({"filter": f'alertname="{name}"'}))
    assert reply.status == 200, reply.body
    alerts: list[dict[str, Any]] = reply.json()
    return alerts


def test_upstream_errors_fire_the_error_rate_alert_and_page_with_its_runbook(
    tools: dict[str, str], key: str, upstream: FakeUpstream, gunicorn: Served, tmp_path: Path
) -> None:
    url, metrics_target = gunicorn
    prometheus_port, alertmanager_port = free_port(), free_port()
    rules = []
    for source in RULE_FILES:
        quick = tmp_path / f"rules-{source.name}"
        quick.write_text(quicker(source.read_text()))
        rules.append(quick)
    config = prometheus_config(
        target=metrics_target, alertmanager=f"127.0.0.1:{alertmanager_port}", rule_files=rules, interval="1s"
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    logs = [tmp_path / "prometheus.log", tmp_path / "alertmanager.log"]
    prometheus = Prometheus(f"http://127.0.0.1:{prometheus_port}")
    alertmanager = f"http://127.0.0.1:{alertmanager_port}"

    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(Receiver())
        (tmp_path / "alertmanager.yml").write_text(
            yaml.safe_dump(alertmanager_config(receiver_url=receiver.url, secrets=tmp_path / "secrets"))
        )
        stack.enter_context(
            serving(
                [
                    tools["alertmanager"],
                    f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                    "--cluster.listen-address=",  # no gossip port: one instance, loopback only
                ],
                url=alertmanager,
                log=logs[1],
            )
        )
        stack.enter_context(
            serving(
                [
                    tools["prometheus"],
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prometheus'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
                url=prometheus.url,
                log=logs[0],
            )
        )

        with Jobs(), Traffic(url, key) as traffic:
            started = time.time()
            # Healthy traffic first: scraped from the metrics port, then a few seconds more
            # so the dashboards have a before.
            served = until(
                "2xx requests scraped",
                lambda: prometheus.query('oneflow_requests_total{job="oneflow", status_class="2xx"} > 10'),
                timeout=30,
                logs=logs,
            )
            assert {series["metric"]["instance"] for series in served} == {metrics_target}
            time.sleep(HEALTHY_SECONDS)
            upstream.script(*[Behave(status=500)] * 100_000)

            firing = until(
                f"{ERROR_RATE} critical firing",
                lambda: [
                    a
                    for a in _alerts(prometheus, ERROR_RATE)
                    if a["labels"]["severity"] == "critical" and a["state"] == "firing"
                ],
                timeout=60,
                logs=logs,
            )
            paged = until(
                "page for the error rate",
                lambda: [
                    event
                    for event in receiver.received("/pagerduty")
                    if event["payload"]["summary"].startswith(f"{ERROR_RATE}:")
                ],
                timeout=30,
                logs=logs,
            )
            # The warning twin reaches Alertmanager 5 s later (for: 10m / 60) and is inhibited.
            inhibited = until(
                f"{ERROR_RATE} warning suppressed",
                lambda: [
                    alert
                    for alert in _managed(alertmanager, ERROR_RATE)
                    if alert["labels"]["severity"] == "warning" and alert["status"]["inhibitedBy"]
                ],
                timeout=30,
                logs=logs,
            )

        chat = [message["attachments"][0] for message in receiver.received("/slack")]
        expressions_checked = _every_expression_evaluates(prometheus)
        _dashboards_drawn(prometheus, start=started, out=tmp_path / "dashboards")

    runbook = f"{RUNBOOK_BASE}error-rate.md"
    [alert] = firing
    assert alert["annotations"]["runbook_url"] == runbook
    event = paged[0]
    assert event["event_action"] == "trigger"
    assert event["routing_key"] == "test-routing-key-0123456789abcdef"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"] == f"{ERROR_RATE}: More than 1% of OneFlow requests fail with a server error."
    assert {"href": runbook, "text": "Runbook"} in event["links"]
    assert event["payload"]["custom_details"]["runbook_url"] == runbook
    # Critical goes to chat too; its warning twin does not, while the critical fires.
    ours = [message for message in chat if ERROR_RATE in message["title"]]
    assert ours and all(message["title"] == f"[FIRING] {ERROR_RATE} (critical)" for message in ours), ours
    assert ours[0]["title_link"] == runbook and f"Runbook: {runbook}" in ours[0]["text"]
    assert inhibited[0]["status"]["state"] == "suppressed"
    assert max(traffic.statuses) >= 500 and 200 in traffic.statuses
    assert expressions_checked > 100


def _every_expression_evaluates(prometheus: Prometheus) -> int:
    """Every rule's and every dashboard panel's expression, queried now: none may fail
    (an empty result is fine: most exporters' series are absent here)."""
    queries = [rule["expr"] for group in rule_groups() for rule in group["rules"]]
    for board in (json.loads(path.read_text()) for path in DASHBOARDS):
        queries += [substitute(expr, rate_interval="10s", range_seconds=300) for expr in expressions(board)]
    errors = {}
    for expr in queries:
        try:
            prometheus.query(expr)
        except (PrometheusError, OSError) as error:  # every failure is reported, not only the first
            errors[expr] = str(error)
    assert errors == {}
    return len(queries)


def _dashboards_drawn(prometheus: Prometheus, *, start: float, out: Path) -> None:
    """One PNG per dashboard from this Prometheus, each with data in some panel; copied to
    $ONEFLOW_DASHBOARD_PNGS too when it is set (e.g. bench/results/dashboards)."""
    rendered = render(prometheus, out, start=start, end=time.time(), step=1, rate_interval="10s")
    drawn = {done.path.stem: done for done in rendered}
    assert sorted(drawn) == sorted(path.stem for path in DASHBOARDS)
    for done in drawn.values():
        assert done.path.read_bytes().startswith(PNG), done.path
        assert done.with_data, f"{done.path.name}: no panel has data"
    assert {
        "Requests per second by status class",
        "Server error ratio (5xx / requests that were not client errors)",
        "Time to first token (streams)",
        "Gateway overhead (non-streaming)",
    } <= set(drawn["oneflow-overview"].with_data)
    if os.environ.get(PNG_DIR):
        kept = ROOT / os.environ[PNG_DIR]
        kept.mkdir(parents=True, exist_ok=True)
        for done in drawn.values():
            shutil.copy(done.path, kept / done.path.name)
