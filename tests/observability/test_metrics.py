"""The metrics an operator needs (issue 14 item 3; docs/metrics.md): each one moves when
its cause happens and by exactly as much, its labels stay bounded however many tenants,
keys and made-up model names come through, and Prometheus can scrape it by pod IP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import signals
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts import services as accounts_services
from accounts.models import ApiKey, Organization, User
from billing import holds, usage
from billing.holds import HOLD, SEED_BUDGET, SEED_CREDITS, SETTLE, Event
from billing.models import BillingAccount, LedgerEntry
from billing.services import billing_account, budget_create, credits_grant, usage_drain
from billing.services import metrics as business_metrics
from billing.services.metrics import SIGNUP_SETTLE, business_metrics_publish
from billing.tasks import publish_business_metrics, reconcile_ledgers
from gateway import limits
from gateway.breakers import CHECK, HEALTH, RECORD
from gateway.errors import GatewayError
from gateway.idempotency import CLAIM, FINISH
from gateway.metrics import refusal_reason
from oneflow.celery import app as celery_app
from oneflow.lib import celery_metrics, redis, redis_keys, scripts
from oneflow.lib.cluster_metrics import ClusterFigures
from oneflow.lib.figures import FIGURES_KEY
from oneflow.lib.metrics import MetricsEndpoint, PoolWatch
from oneflow.lib.scripts import Invocation, Script
from tests.conftest import free_port, gunicorn_serving
from tests.factories import UserFactory, usage_record
from tests.gateway.asgi_client import AsgiClient, call_app, tenant_key
from tests.http import call

TOKEN = "metrics-token-0123456789abcdef0123456789"
POD = "10.42.7.19:9100"  # an address no ALLOWED_HOSTS names
CHAT = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'


# --- Reading a scrape ------------------------------------------------------------------------


class Samples(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """One scrape: the value of each sample by its name and labels."""

    def value(self, name: str, **labels: str) -> float:
        return self.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self

    def oneflow(self) -> dict[str, list[dict[str, str]]]:
        """The labels of every oneflow_* sample, by sample name."""
        found: dict[str, list[dict[str, str]]] = {}
        for name, labels in self:
            if name.startswith("oneflow_"):
                found.setdefault(name, []).append(dict(labels))
        return found


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def parse(text: str) -> Samples:
    samples = Samples()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def _nothing_else(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"only /metrics is asked for, not {scope['path']}")


def scrape() -> Samples:
    """What Prometheus reads, through the endpoint, with the token, by pod IP."""
    endpoint = MetricsEndpoint(_nothing_else, token=TOKEN, open_to_loopback=False)
    headers = {"host": POD, "authorization": f"Bearer {TOKEN}"}
    answer = asyncio.run(call_app(endpoint, "GET", "/metrics", b"", headers))
    assert answer.status == 200, answer.body[:500]
    return parse(answer.body.decode())


@pytest.fixture(autouse=True)
def _fresh_figures() -> Iterator[None]:
    """Each test starts with no figures and an empty usage stream."""
    client = redis.sync_client()
    client.delete(FIGURES_KEY, redis_keys.USAGE_STREAM, redis_keys.USAGE_PENDING)
    yield
    client.delete(FIGURES_KEY, redis_keys.USAGE_STREAM, redis_keys.USAGE_PENDING)


@pytest.fixture
def gateway(transactional_db: None) -> Iterator[AsgiClient]:
    """The whole application in-process, the demo catalog on the simulator, Acme's key."""
    client = AsgiClient(tenant_key())
    yield client
    client.close()


def tenant(name: str, *, funds: Decimal = Decimal(1000), **limits: Any) -> str:
    """Another organization with a key of its own; its raw key."""
    owner = accounts_services.user_create(email=f"{name.lower()}@example.com", password="correct horse battery")
    organization = accounts_services.organization_create(name=name, owner=owner)
    if limits:
        Organization.objects.filter(pk=organization.pk).update(**limits)
    if funds:
        credits_grant(organization=organization, amount=funds, idempotency_key=f"{name}-credits")
    return accounts_services.api_key_create(organization=organization, name="ci", created_by=owner).raw


def chat(gateway: AsgiClient, key: str | None = None, *, model: str = "gpt-4o-mini") -> int:
    body = CHAT.replace(b"gpt-4o-mini", model.encode())
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return gateway.post("/v1/chat/completions", body, headers=headers).status


# --- Refusals and limits -------------------------------------------------------------------


def test_it_counts_each_refusal_under_its_reason(gateway: AsgiClient) -> None:
    broke = tenant("Broke", funds=Decimal(0))
    tight = tenant("Tight", limit_rpm=1)
    budgeted = tenant("Budgeted")
    budget_create(organization=Organization.objects.get(name="Budgeted"), period="daily", limit=Decimal("0.000001"))
    before = scrape()

    assert chat(gateway, "of_live_nope_0123456789abcdef0123456789") == 401
    assert chat(gateway, model="no-such-model-7") == 404
    assert gateway.post("/v1/chat/completions", b'{"messages": []}').status == 400
    assert chat(gateway, broke) == 429
    assert [chat(gateway, tight), chat(gateway, tight)] == [200, 429]
    assert chat(gateway, budgeted) == 429
    assert chat(gateway) == 200  # served: no refusal

    after = scrape()
    reasons = ("invalid_key", "model_not_found", "invalid_request", "insufficient_credits", "rate_limit", "budget")
    counted = {
        reason: moved(before, after, "oneflow_refusals_total", reason=reason)
        for reason in (*reasons, "circuit_open", "model_not_priced")
    }
    assert counted == {
        "invalid_key": 1,
        "model_not_found": 1,
        "invalid_request": 1,
        "insufficient_credits": 1,
        "rate_limit": 1,
        "budget": 1,
        "circuit_open": 0,
        "model_not_priced": 0,
    }


def test_an_upstream_failure_is_no_refusal() -> None:
    assert refusal_reason(GatewayError(502, "bad gateway", code="upstream_transient")) is None
    assert refusal_reason(GatewayError(400, "upstream says no", code="upstream_request")) is None
    assert refusal_reason(GatewayError(500, "oops")) is None
    assert refusal_reason(GatewayError(503, "open", code="circuit_open")) == "circuit_open"
    assert refusal_reason(GatewayError(400, "bad", code="anything-new")) == "invalid_request"


def test_it_counts_an_admitted_request_that_leaves_less_than_a_tenth_of_a_limit(gateway: AsgiClient) -> None:
    ten = tenant("Ten", limit_rpm=10, limit_rph=10_000)
    before = scrape()

    statuses = [chat(gateway, ten) for _ in range(11)]

    after = scrape()
    assert statuses == [200] * 10 + [429]
    # Requests 1-9 leave 9..1 of 10 (not under a tenth); the 10th leaves 0; the 11th is refused.
    near = after.value("oneflow_rate_limit_near_total", limit="requests") - before.value(
        "oneflow_rate_limit_near_total", limit="requests"
    )
    assert near == 1
    assert after.value("oneflow_rate_limit_near_total", limit="tokens") == before.value(
        "oneflow_rate_limit_near_total", limit="tokens"
    )


# --- Redis --------------------------------------------------------------------------------


class _FailingRedis:
    async def evalsha(self, *args: Any) -> Any:
        raise RedisConnectionError("Redis is gone")


def test_a_redis_round_trip_is_timed_and_its_failure_counted_by_phase(transactional_db: None) -> None:
    settle: Invocation[Any] = Invocation(Script("credits.settle", "return 1"), [], [])
    hold: Invocation[Any] = Invocation(Script("credits.hold", "return 1"), [], [])
    before = scrape()

    async def run() -> None:
        client = redis.async_client()
        try:
            await scripts.arun_all(client, [settle])
        finally:
            await client.aclose()
        with pytest.raises(RedisConnectionError):
            await scripts.arun(_FailingRedis(), hold)  # type: ignore[arg-type]

    asyncio.run(run())

    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("oneflow_redis_command_seconds_count", phase="settlement") == 1
    assert moved("oneflow_redis_command_seconds_count", phase="admission") == 1
    assert moved("oneflow_redis_errors_total", phase="admission") == 1
    assert moved("oneflow_redis_errors_total", phase="settlement") == 0


def test_every_hot_path_script_has_a_phase() -> None:
    """A script renamed without its phase would count as "other" unnoticed."""
    hot = [HOLD, SEED_CREDITS, SEED_BUDGET, SETTLE, limits.ADMIT, limits.COMPLETE, CHECK, HEALTH, RECORD]
    assert {script.name: scripts.PHASES.get(script.name) for script in [*hot, CLAIM, FINISH]} == {
        "credits.hold": "admission",
        "credits.seed": "admission",
        "budget.seed": "admission",
        "credits.settle": "settlement",
        "limits.admit": "admission",
        "limits.complete": "settlement",
        "breakers.check": "admission",
        "breakers.health": "admission",
        "breakers.record": "settlement",
        "idempotency.claim": "idempotency",
        "idempotency.finish": "idempotency",
    }


def test_a_served_request_times_its_admission_and_settlement(gateway: AsgiClient) -> None:
    before = scrape()
    assert chat(gateway) == 200
    after = scrape()
    for phase in ("admission", "settlement"):
        assert after.value("oneflow_redis_command_seconds_count", phase=phase) > before.value(
            "oneflow_redis_command_seconds_count", phase=phase
        )


# --- Celery -------------------------------------------------------------------------------


@celery_app.task(name="tests.observability.fail")
def fail() -> None:
    raise RuntimeError("this task always fails")


def failures(samples: Samples, task: str = "tests.observability.fail") -> float:
    return samples.value("oneflow_celery_task_failures_total", task=task)


def test_a_task_that_fails_eagerly_counts_under_its_name(db: None) -> None:
    before = failures(scrape())
    with pytest.raises(RuntimeError):
        fail.apply(throw=True)  # as embedded mode runs tasks: eager, the error raised to the caller
    fail.apply(throw=False)  # eager, the error kept in the result: Celery sends task_failure
    assert failures(scrape()) - before == 2


@pytest.mark.usefixtures("celery_worker")
def test_a_task_that_fails_in_a_worker_counts_under_its_name() -> None:
    before = failures(scrape())
    fail.delay()
    deadline = time.monotonic() + 15
    while failures(scrape()) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert failures(scrape()) - before == 1


class Consumer:
    """What worker_ready names as its sender: a worker's consumer, which knows its app."""

    app = celery_app


def test_a_starting_worker_creates_every_tasks_series_at_zero(db: None) -> None:
    redis.sync_client().hset(FIGURES_KEY, "oneflow_celery_task_failures_total|billing.drain_usage", 3)

    signals.worker_ready.send(sender=Consumer())  # as `celery worker` sends it

    samples = scrape()
    assert samples.value("oneflow_celery_task_failures_total", task="billing.rollup_usage") == 0
    assert samples.has("oneflow_celery_task_failures_total", task="billing.publish_business_metrics")
    assert samples.value("oneflow_celery_task_failures_total", task="billing.drain_usage") == 3, "kept, not reset"


def test_an_unknown_task_is_counted_as_other() -> None:
    stranger = SimpleNamespace(name=f"made.up.{uuid.uuid4().hex}", app=celery_app)
    assert celery_metrics.task_label(stranger) == "other"  # type: ignore[arg-type]
    assert celery_metrics.task_label(fail) == "tests.observability.fail"


@pytest.mark.usefixtures("live_services")
def test_queue_depth_is_read_from_the_broker() -> None:
    broker = redis.sync_client()
    queue = f"metrics-test-{uuid.uuid4().hex[:8]}"
    try:
        broker.lpush(queue, "a", "b", "c")
        broker.lpush(f"{queue}\x06\x163", "d")  # a message of priority 3
        with override_settings(METRICS_CELERY_QUEUES=[queue, "celery"]):
            samples = scrape()
    finally:
        broker.delete(queue, f"{queue}\x06\x163")
    assert samples.value("oneflow_celery_queue_depth", queue=queue) == 4
    assert samples.has("oneflow_celery_queue_depth", queue="celery")


# --- Usage and money ------------------------------------------------------------------------


def test_the_drain_counts_exactly_the_credits_it_charges(gateway: AsgiClient) -> None:
    before = scrape().value("oneflow_credits_charged_total")
    assert [chat(gateway) for _ in range(3)] == [200] * 3

    usage_drain()

    charged = -sum(entry.amount for entry in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE))
    assert charged > 0
    assert scrape().value("oneflow_credits_charged_total") - before == pytest.approx(float(charged), rel=1e-12)
    usage_drain()  # nothing new: nothing more
    assert scrape().value("oneflow_credits_charged_total") - before == pytest.approx(float(charged), rel=1e-12)


def _append(organization_id: int, *, charged: str) -> None:
    """An event as the gateway appends it, charging ``charged`` credits."""
    record = usage_record(organization_id, charged=charged)
    event = Event(usage.encode(record), organization_id, None, record.created_at)
    scripts.run(
        redis.sync_client(), holds.settle(organization_id=organization_id, hold_id="", charged_units=0, event=event)
    )


def test_drain_lag_and_journal_depth_follow_the_stream(transactional_db: None) -> None:
    owner = UserFactory.create()
    organization = accounts_services.organization_create(name="Lagging", owner=owner)
    credits_grant(organization=organization, amount=Decimal(10), idempotency_key="lag-credits")
    empty = scrape()
    assert (empty.value("oneflow_usage_journal_depth"), empty.value("oneflow_usage_drain_lag_seconds")) == (0, 0)

    for _ in range(3):
        _append(organization.pk, charged="0.25")
    time.sleep(0.2)
    waiting = scrape()
    usage_drain()
    drained = scrape()

    assert waiting.value("oneflow_usage_journal_depth") == 3
    assert 0.2 <= waiting.value("oneflow_usage_drain_lag_seconds") < 30
    assert drained.value("oneflow_usage_journal_depth") == 0
    assert drained.value("oneflow_usage_drain_lag_seconds") == 0
    assert drained.value("oneflow_credits_charged_total") - waiting.value("oneflow_credits_charged_total") == 0.75


# --- The business job ---------------------------------------------------------------------


def test_the_business_job_sets_the_gauges_to_the_databases_figures(transactional_db: None) -> None:
    now = timezone.now()
    owners = {name: UserFactory.create(email=f"{name}@example.com") for name in ("acme", "globex", "initech", "umb")}
    organizations = {
        name: accounts_services.organization_create(name=name.title(), owner=owner) for name, owner in owners.items()
    }
    keys = {
        name: accounts_services.api_key_create(organization=organizations[name], name="ci", created_by=owners[name])
        for name in ("acme", "globex", "umb")
    }
    ApiKey.objects.filter(pk=keys["acme"].key.pk).update(last_used_at=now - timedelta(hours=1))
    ApiKey.objects.filter(pk=keys["umb"].key.pk).update(last_used_at=now - timedelta(days=3))
    credits_grant(organization=organizations["acme"], amount=Decimal("100.5"), idempotency_key="acme")
    credits_grant(organization=organizations["umb"], amount=Decimal(50), idempotency_key="umb")
    billing_account(organization=organizations["globex"])  # an account, empty

    publish_business_metrics.apply(throw=True)  # the scheduled task, eagerly

    samples = scrape()
    assert samples.value("oneflow_credits_outstanding") == 150.5
    assert samples.value("oneflow_negative_balances") == 0
    assert samples.value("oneflow_active_keys") == 1
    assert samples.value("oneflow_active_organizations") == 1
    funnel = {stage: samples.value("oneflow_funnel_organizations", stage=stage) for stage in ("signed_up",)}
    funnel |= {
        stage: samples.value("oneflow_funnel_organizations", stage=stage)
        for stage in ("first_key", "first_request", "first_credits")
    }
    assert funnel == {"signed_up": 4, "first_key": 3, "first_request": 2, "first_credits": 2}
    assert time.time() - samples.value("oneflow_business_metrics_last_success_timestamp_seconds") < 60


def test_sign_ups_are_counted_once_each(transactional_db: None) -> None:
    UserFactory.create_batch(3)
    later = timezone.now() + SIGNUP_SETTLE * 2

    business_metrics_publish(now=later)
    first = scrape().value("oneflow_signups_total")
    User.objects.bulk_create(
        User(email=f"late{number}@example.com", date_joined=later + timedelta(seconds=1)) for number in range(2)
    )
    business_metrics_publish(now=later + SIGNUP_SETTLE * 2)
    business_metrics_publish(now=later + SIGNUP_SETTLE * 2)  # a second run at once counts none again
    business_metrics_publish(now=later + SIGNUP_SETTLE * 3)

    assert first == 3
    assert scrape().value("oneflow_signups_total") == 5


def test_overlapping_runs_count_each_sign_up_once(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    UserFactory.create_batch(2)
    later = timezone.now() + SIGNUP_SETTLE * 2
    real = business_metrics._business_figures

    def overlapped(**kwargs: Any) -> business_metrics.BusinessFigures:
        monkeypatch.setattr(business_metrics, "_business_figures", real)
        business_metrics_publish(now=later)  # another run, between this one's read and its write
        return real(**kwargs)

    monkeypatch.setattr(business_metrics, "_business_figures", overlapped)
    business_metrics_publish(now=later)

    assert scrape().value("oneflow_signups_total") == 2


def test_the_reconciliation_publishes_how_many_ledgers_disagree(transactional_db: None) -> None:
    owner = UserFactory.create()
    organization = accounts_services.organization_create(name="Audited", owner=owner)
    credits_grant(organization=organization, amount=Decimal(10), idempotency_key="audited")

    reconcile_ledgers.apply(throw=True)
    agreeing = scrape().value("oneflow_ledger_reconciliation_mismatches")
    BillingAccount.objects.filter(organization=organization).update(balance=Decimal(11))  # a hand edit
    reconcile_ledgers.apply(throw=True)

    assert agreeing == 0
    assert scrape().value("oneflow_ledger_reconciliation_mismatches") == 1


# --- The database pool --------------------------------------------------------------------


@pytest.mark.usefixtures("live_services")
def test_the_pool_gauges_are_the_pools_own_figures(transactional_db: None) -> None:
    connection.ensure_connection()  # lent to this thread
    watch = PoolWatch(every=3600)
    watch.connected(connection=connection)

    watch.sample()

    # PostgreSQL's wrapper has a pool; the stubs know the base class only.
    stats = connection.pool.get_stats()  # type: ignore[attr-defined]
    samples = scrape()
    assert samples.value("oneflow_db_pool_connections", state="used") == stats["pool_size"] - stats["pool_available"]
    assert samples.value("oneflow_db_pool_connections", state="idle") == stats["pool_available"]
    assert samples.value("oneflow_db_pool_connections", state="used") >= 1


def test_failed_connections_of_the_pool_are_counted_once_each() -> None:
    nowhere = ConnectionPool(f"host=127.0.0.1 port={free_port()} connect_timeout=1", min_size=1, open=False)
    nowhere.open(wait=False)
    try:
        deadline = time.monotonic() + 10
        while nowhere.get_stats().get("connections_errors", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        watch = PoolWatch(every=3600)
        watch.connected(connection=SimpleNamespace(pool=nowhere))
        before = scrape().value("oneflow_db_connection_errors_total")
        watch.sample()
        watch.sample()  # a second look counts only what failed since the first
        failed = watch.errors_seen[id(nowhere)]
        after = scrape().value("oneflow_db_connection_errors_total")
    finally:
        nowhere.close()
    assert failed >= 2
    assert after - before == failed


# --- Bounded labels -----------------------------------------------------------------------

BOUND = 25  # distinct values of any one label of any one oneflow_* metric


def cardinalities(samples: Samples) -> dict[tuple[str, str], int]:
    seen: dict[tuple[str, str], set[str]] = {}
    for name, series in samples.oneflow().items():
        for labels in series:
            for label, value in labels.items():
                if label != "le":
                    seen.setdefault((name, label), set()).add(value)
    return {where: len(values) for where, values in seen.items()}


def traffic(gateway: AsgiClient, tenants: int, *, tag: str) -> list[str]:
    """Requests from ``tenants`` new organizations (served, refused, unknown models,
    broken bodies, bad keys); returns every name and id a label must never carry."""
    sent = []
    for number in range(tenants):
        name = f"T{tag}{number}"
        key = tenant(name, funds=Decimal(number % 2 * 100))
        model = f"made-up-model-{tag}-{number}-{uuid.uuid4().hex[:6]}"
        chat(gateway, key)
        chat(gateway, key, model=model)
        chat(gateway, f"of_live_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}")
        gateway.post("/v1/chat/completions", b"{not json", headers={"authorization": f"Bearer {key}"})
        sent += [model, name, key.split("_")[2], key]
    usage_drain()
    business_metrics_publish()
    return sent


def test_labels_stay_bounded_however_many_tenants_keys_and_model_names(gateway: AsgiClient) -> None:
    first_sent = traffic(gateway, 6, tag="a")
    first = cardinalities(scrape())
    more_sent = traffic(gateway, 18, tag="b")
    samples = scrape()
    second = cardinalities(samples)

    assert second == first, "three times the tenants, the same label values"
    assert max(second.values()) <= BOUND, max(second.items(), key=lambda item: item[1])
    values = {value for series in samples.oneflow().values() for labels in series for value in labels.values()}
    leaked = [sent for sent in first_sent + more_sent if sent in values]
    assert leaked == []


# --- Scraping it ----------------------------------------------------------------------------


def test_production_serves_a_scrape_addressed_to_a_pod_ip(transactional_db: None) -> None:
    from oneflow.asgi import build

    with override_settings(
        PRODUCTION=True, METRICS_TOKEN=TOKEN, ALLOWED_HOSTS=["oneflow.example.com"], ONEFLOW_EMBEDDED_BEAT=False
    ):
        app = build()
        headers = {"host": POD, "authorization": f"Bearer {TOKEN}"}
        scraped = asyncio.run(call_app(app, "GET", "/metrics", b"", headers))
        # The same Host on a Django page: the host check Prometheus never meets.
        django_page = asyncio.run(call_app(app, "GET", "/healthz", b"", {"host": POD}))

    assert django_page.status == 400
    assert scraped.status == 200
    samples = parse(scraped.body.decode())
    assert samples.value("oneflow_build_info", version=settings.ONEFLOW_VERSION, commit=settings.GIT_COMMIT) == 1
    assert samples.has("oneflow_credits_charged_total")
    assert samples.has("oneflow_usage_drain_lag_seconds")


def settings_of(**environ: str) -> str:
    """ONEFLOW_VERSION and GIT_COMMIT as oneflow/settings.py reads them from ``environ``."""
    script = "import oneflow.settings as s; print(s.ONEFLOW_VERSION, s.GIT_COMMIT)"
    inherited = {k: v for k, v in os.environ.items() if k not in ("ONEFLOW_VERSION", "GIT_COMMIT")}
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script], env={**inherited, **environ}, capture_output=True, text=True, check=True
    )
    return done.stdout.split("\n")[-2]


def test_build_info_names_the_version_and_commit_it_was_given() -> None:
    project = tomllib.loads((Path(settings.BASE_DIR) / "pyproject.toml").read_text())["project"]["version"]
    assert settings_of(ONEFLOW_VERSION="2.4.1", GIT_COMMIT="0123abc") == "2.4.1 0123abc"
    assert settings_of() == f"{project} unknown"
    with override_settings(ONEFLOW_VERSION="2.4.1", GIT_COMMIT="0123abc"):
        assert scrape().value("oneflow_build_info", version="2.4.1", commit="0123abc") == 1


@pytest.mark.usefixtures("live_services")
def test_the_metrics_port_collector_reads_the_cluster_from_the_environment(transactional_db: None) -> None:
    """What the gunicorn master serves needs no Django: the same figures from the same Redis."""
    redis.sync_client().hset(FIGURES_KEY, "oneflow_active_keys", 7)
    figures = ClusterFigures.from_environment({"REDIS_URL": settings.REDIS_URL})
    registry = CollectorRegistry()
    registry.register(figures)
    samples = parse(generate_latest(registry).decode())
    assert samples.value("oneflow_active_keys") == 7
    assert samples.value("oneflow_metrics_redis_up") == 1
    assert ClusterFigures.from_environment({}).client is None  # embedded: nothing shared to serve


@pytest.mark.usefixtures("live_services")
def test_the_metrics_port_serves_the_cluster_figures(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("METRICS_")},
        "ONEFLOW_ENV": "production",
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "JWT_SIGNING_KEY": uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "localhost",
        "SECURE_SSL_REDIRECT": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "METRICS_PORT": str(metrics_port),
        "METRICS_ADDR": "127.0.0.1",
        "ONEFLOW_EMBEDDED_BEAT": "false",
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "WARNING",
    }
    with gunicorn_serving(env, port):
        scraped = call(f"http://127.0.0.1:{metrics_port}", "GET", "/metrics", headers={"Host": POD})
    samples = parse(scraped.body.decode())
    assert samples.has("oneflow_credits_charged_total")
    assert samples.has("oneflow_usage_drain_lag_seconds")
