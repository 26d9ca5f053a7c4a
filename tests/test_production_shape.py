"""OneFlow as production runs it: gunicorn with two uvicorn workers, PostgreSQL
and Redis (CI only). Metrics and usage must add up across the workers."""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from accounts import services as accounts_services
from accounts.models import Organization
from billing import holds
from billing.holds import to_units
from billing.models import LedgerEntry, UsageEvent
from billing.selectors import price_book
from billing.services import budget_create, credits_grant, credits_reconcile, ledger_reconcile, usage_drain
from gateway import reservations
from oneflow.lib import redis
from providers.selectors import catalog_build
from providers.services import catalog_seed_demo
from tests.conftest import free_port, gunicorn_serving
from tests.http import Reply, call

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 40
LOTS = 1_000_000  # requests a minute: these tests are about money, not limits
METRICS_TOKEN = secrets.token_urlsafe(32)


def acme_with_credits(amount: Decimal) -> tuple[Organization, str]:
    """The demo catalog, and Acme with ``amount`` credits, no practical rate limit and a key."""
    catalog_seed_demo()
    alice = accounts_services.user_create(email="alice@example.com", password="correct horse battery staple")
    acme = accounts_services.organization_create(name="Acme", owner=alice)
    Organization.objects.filter(pk=acme.pk).update(limit_rpm=LOTS, limit_rph=LOTS)
    key = accounts_services.api_key_create(organization=acme, name="ci", created_by=alice).raw
    credits_grant(organization=acme, amount=amount, idempotency_key="grant")
    return acme, key


@pytest.fixture
def gunicorn(live_services: None, transactional_db: None, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    database = settings.DATABASES["default"]
    env = {
        **os.environ,
        "ONEFLOW_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        # The server must use the test database the fixtures write to.
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "ENCRYPTION_KEY": settings.ENCRYPTION_KEY,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        # No metrics port (tests/test_metrics_endpoint.py covers it): /metrics on
        # the user-traffic port, which production opens to this token only.
        "METRICS_PORT": "0",
        "METRICS_TOKEN": METRICS_TOKEN,
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
    }
    with gunicorn_serving(env, port) as url:
        yield url


def test_metrics_and_usage_add_up_across_two_workers(gunicorn: str, tmp_path: Path) -> None:
    _, key = acme_with_credits(Decimal(1000))
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(
            pool.map(
                lambda _: call(gunicorn, "POST", "/v1/chat/completions", body=body, headers=headers), range(REQUESTS)
            )
        )

    assert [r.status for r in replies] == [200] * REQUESTS
    served_by = {r.headers.get("x-request-id") for r in replies}
    assert len(served_by) == REQUESTS
    assert call(gunicorn, "GET", "/metrics", headers={"Host": "localhost"}).status == 401
    scrape = {"Host": "localhost", "Authorization": f"Bearer {METRICS_TOKEN}"}
    metrics = call(gunicorn, "GET", "/metrics", headers=scrape).body.decode()
    labels = 'endpoint="chat",model="gpt-4o-mini",provider="Simulator",status_class="2xx"'
    counted = re.search(rf"^oneflow_requests_total\{{{labels}\}} (\S+)$", metrics, flags=re.M)
    assert counted is not None, metrics[:2000]
    assert float(counted.group(1)) == REQUESTS
    # Each worker writes its own metrics file: two writers and the exact total
    # mean /metrics summed both workers rather than answering for one.
    writers = {path.name for path in (tmp_path / "prometheus").glob("counter_*.db")}
    assert len(writers) == 2, writers
    deadline = time.monotonic() + 10
    while UsageEvent.objects.count() < REQUESTS and time.monotonic() < deadline:
        usage_drain()
        time.sleep(0.1)
    assert UsageEvent.objects.count() == REQUESTS


def test_200_simultaneous_requests_never_overspend(gunicorn: str) -> None:
    # Each request holds ~0.000032 credits (7 prompt + 50 output tokens of
    # gpt-4o-mini) and costs about half that: this covers a few dozen.
    granted = Decimal("0.002")
    acme, key = acme_with_credits(granted)
    body = b'{"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]}'
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    barrier = threading.Barrier(200)

    def send(_: int) -> Reply:
        barrier.wait()
        return call(gunicorn, "POST", "/v1/chat/completions", body=body, headers=headers)

    with ThreadPoolExecutor(max_workers=200) as pool:
        replies = list(pool.map(send, range(200)))

    served = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == 429]
    assert len(served) + len(refused) == 200
    assert served and refused
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    deadline = time.monotonic() + 20
    while UsageEvent.objects.count() < 200 and time.monotonic() < deadline:
        usage_drain()
        time.sleep(0.1)
    charges = LedgerEntry.objects.filter(kind="charge")
    assert charges.count() == len(served) == UsageEvent.objects.filter(status_code=200).count()
    served_cost = sum((Decimal(r.headers["x-oneflow-cost"]) for r in served), Decimal(0))
    balance, ledger = ledger_reconcile(organization=acme)
    assert balance == ledger == granted - served_cost
    assert balance >= 0


def test_a_redis_flushall_during_traffic_loses_no_usage_and_no_charge(gunicorn: str) -> None:
    """Usage in the stream, holds and balances are all wiped mid-traffic: each
    web worker sends again what the drain had not stored, the ledger is still
    the truth, and the reconciliation brings Redis back to it."""
    granted = Decimal(1000)
    acme, key = acme_with_credits(granted)
    body = b'{"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]}'
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    send = lambda _: call(gunicorn, "POST", "/v1/chat/completions", body=body, headers=headers)  # noqa: E731

    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(send, range(60)))
        usage_drain()  # some usage is in PostgreSQL, the rest only in Redis
        later = [pool.submit(send, i) for i in range(240)]
        while sum(f.done() for f in later) < 80:
            time.sleep(0.005)
        redis.sync_client().flushall()  # with requests in flight and events not drained
        replies += [f.result() for f in later]

    served = {r.headers["x-request-id"]: r for r in replies if r.status == 200}
    assert len(served) == len(replies) == 300
    deadline = time.monotonic() + 30
    while UsageEvent.objects.count() < len(served) and time.monotonic() < deadline:
        time.sleep(0.5)  # the workers' journals notice the wipe within a second or two
        usage_drain()
    assert set(UsageEvent.objects.values_list("request_id", flat=True)) == set(served)
    charges = dict(LedgerEntry.objects.filter(kind="charge").values_list("request_id", "amount"))
    assert charges == {rid: -Decimal(r.headers["x-oneflow-cost"]) for rid, r in served.items()}
    balance, ledger = ledger_reconcile(organization=acme)
    assert balance == ledger == granted + sum(charges.values())
    credits_reconcile()
    free = holds.free_units(redis.sync_client(), organization_id=acme.pk)
    assert free == to_units(balance, round_up=False), "Redis agrees with the ledger again"


def test_limits_hold_across_two_workers(gunicorn: str) -> None:
    """N + 5 simultaneous requests against a limit of N, spread over both
    workers by the kernel: exactly N get through."""
    catalog_seed_demo()
    alice = accounts_services.user_create(email="alice@example.com", password="correct horse battery staple")
    acme = accounts_services.organization_create(name="Acme", owner=alice)
    limit = 30
    # Per hour: the quota comes back one request every 2 minutes, far longer than
    # the burst takes even on a loaded machine (per minute it would be every 2 s).
    Organization.objects.filter(pk=acme.pk).update(limit_rph=limit)
    key = accounts_services.api_key_create(organization=acme, name="ci", created_by=alice).raw
    credits_grant(organization=acme, amount=Decimal(1000), idempotency_key="grant")
    body = b'{"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]}'
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    barrier = threading.Barrier(limit + 5)

    def send(_: int) -> Reply:
        barrier.wait()
        return call(gunicorn, "POST", "/v1/chat/completions", body=body, headers=headers)

    with ThreadPoolExecutor(max_workers=limit + 5) as pool:
        replies = list(pool.map(send, range(limit + 5)))

    assert sorted(r.status for r in replies) == [200] * limit + [429] * 5
    refused = [r for r in replies if r.status == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in refused)


def test_a_budget_created_with_charges_of_its_window_undrained_is_never_exceeded(gunicorn: str) -> None:
    """Issue 11, production shape: the first request settles before the budget exists
    and is not drained yet; the budget is worth one more hold only if that charge were
    forgotten. Both workers then get a burst: nothing more may be served."""
    acme, key = acme_with_credits(Decimal(1000))
    body = b'{"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]}'
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    assert call(gunicorn, "POST", "/v1/chat/completions", body=body, headers=headers).status == 200
    model = catalog_build().find("gpt-4o-mini")
    assert model is not None
    bounds = reservations.request_bounds(body=json.loads(body), endpoint="chat")
    hold = reservations.worst_case_cost(bounds=bounds, model=model, organization_id=acme.pk, prices=price_book())
    budget_create(organization=acme, period="daily", limit=hold)
    barrier = threading.Barrier(REQUESTS)

    def send(_: int) -> Reply:
        barrier.wait()
        return call(gunicorn, "POST", "/v1/chat/completions", body=body, headers=headers)

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        replies = list(pool.map(send, range(REQUESTS)))

    assert [r.status for r in replies] == [429] * REQUESTS
    assert {r.json()["error"]["code"] for r in replies} == {"budget_exceeded"}
    usage_drain()
    spent = sum(UsageEvent.objects.filter(organization=acme).values_list("charged", flat=True), Decimal(0))
    assert 0 < spent <= hold
