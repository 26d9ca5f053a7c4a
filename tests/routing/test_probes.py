"""Health probes feed the breakers and health figures of every enabled chat
deployment, obey the breaker's one half-open probe, and flag credentials the
provider refuses (as live traffic does); operators see and clear the flag."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from accounts.models import User
from billing.models import UsageEvent
from gateway import breakers
from gateway.breakers import Health, Outcome, State, Verdict
from oneflow.celery import app as celery_app
from oneflow.lib import redis, redis_keys
from providers.models import Credential, Deployment, Provider, PublicModel
from providers.services import credential_flag
from routing import tasks
from routing.probes import PROBE_TIMEOUT_CAP_SECONDS, deployments_probe
from tests.conftest import UPSTREAM_KEY
from tests.fakes import Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route
from tests.redis_state import fresh, run

NOW = 1_800_000_000.0  # the breakers' clock, passed explicitly: cooldowns without waiting
MESSAGES: Any = [{"role": "user", "content": "Hello"}]


_fresh_breakers = fresh(redis_keys.BREAKER_PATTERN)


@pytest.fixture
def smart(upstream: FakeUpstream) -> Deployment:
    """The public model "smart", served by a fake OpenAI through a stored credential."""
    route(upstream, Provider.Kind.OPENAI)
    return Deployment.objects.get(public_model__name="smart")


def health(deployment: Deployment, now: float = NOW) -> Health:
    return run(breakers.health([deployment.pk], now=now))[deployment.pk]


def credential_of(deployment: Deployment) -> Credential:
    assert deployment.credential_id is not None
    return Credential.objects.get(pk=deployment.credential_id)


def chat_requests(upstream: FakeUpstream) -> list[Any]:
    return [r for r in upstream.requests if r.path.endswith("/chat/completions")]


def test_it_probes_each_enabled_chat_deployment_with_one_tiny_request(
    db: None, upstream: FakeUpstream, smart: Deployment
) -> None:
    route(upstream, Provider.Kind.ANTHROPIC, name="careful")
    Deployment.objects.filter(public_model__name="careful").update(enabled=False)
    embedding = PublicModel.objects.create(name="embed", kind=PublicModel.Kind.EMBEDDING)
    Deployment.objects.create(
        public_model=embedding, provider=smart.provider, credential=smart.credential, upstream_model="embed"
    )
    usage_before = redis.sync_client().xlen(redis_keys.USAGE_STREAM)

    assert deployments_probe(now=NOW) == {smart.pk: "ok"}

    [probe] = upstream.requests  # the disabled and the embedding deployments were left alone
    assert probe.path == "/v1/chat/completions"
    assert probe.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert probe.json["max_tokens"] == 1
    assert [m["role"] for m in probe.json["messages"]] == ["user"]
    figures = health(smart)
    assert (figures.state, figures.calls, figures.failures) == (State.CLOSED, 1, 0)
    assert figures.latency_ms is not None and figures.latency_ms > 0
    # Probes are not billed: no hold, no usage event.
    assert redis.sync_client().xlen(redis_keys.USAGE_STREAM) == usage_before
    assert not UsageEvent.objects.exists()


def test_five_failing_probes_open_the_breaker_and_an_open_one_is_left_alone(
    db: None, upstream: FakeUpstream, smart: Deployment
) -> None:
    upstream.script(*[Behave(status=503)] * 5)
    for second in range(4):
        assert deployments_probe(now=NOW + second) == {smart.pk: "failed"}
        assert health(smart).state is State.CLOSED
    assert deployments_probe(now=NOW + 4) == {smart.pk: "failed"}
    assert health(smart).state is State.OPEN
    assert health(smart).latency_ms is None, "failures carry no latency"

    assert deployments_probe(now=NOW + 5) == {smart.pk: "skipped"}
    assert len(chat_requests(upstream)) == 5, "an open breaker is not probed"

    # After the cooldown the probe is the one call of the half-open breaker, and closes it.
    assert deployments_probe(now=NOW + 4 + 60) == {smart.pk: "ok"}
    assert health(smart, NOW + 64).state is State.CLOSED


def open_breaker(deployment: Deployment) -> None:
    for index in range(5):
        run(breakers.record(deployment.pk, request_id=f"live-{index}", outcome=Outcome.FAILURE, now=NOW))
    assert health(deployment).state is State.OPEN


def test_a_half_open_breaker_gets_exactly_one_probe(
    transactional_db: None, upstream: FakeUpstream, smart: Deployment
) -> None:
    open_breaker(smart)
    # A live request was first past the cooldown: it is the probe.
    assert run(breakers.check([smart.pk], request_id="live", now=NOW + 61)).verdicts == {smart.pk: Verdict.PROBE}
    assert deployments_probe(now=NOW + 62) == {smart.pk: "skipped"}
    assert chat_requests(upstream) == []

    # It sent its request elsewhere; now two probe runs race for the probe.
    run(breakers.record(smart.pk, request_id="live", outcome=Outcome.UNUSED, now=NOW + 62))
    upstream.script(Behave(delay=0.3))

    def probe() -> dict[int, str]:
        try:
            return deployments_probe(now=NOW + 63)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _: probe(), range(2)))
    assert sorted(result[smart.pk] for result in runs) == ["ok", "skipped"]
    assert len(chat_requests(upstream)) == 1
    assert health(smart, NOW + 64).state is State.CLOSED


def test_a_request_error_proves_the_deployment_reachable(db: None, upstream: FakeUpstream, smart: Deployment) -> None:
    # e.g. a reasoning model that wants max_completion_tokens rather than max_tokens
    upstream.script(Behave(status=400, message="Unsupported parameter: 'max_tokens'"))
    for index in range(4):
        run(breakers.record(smart.pk, request_id=f"live-{index}", outcome=Outcome.FAILURE, now=NOW))

    assert deployments_probe(now=NOW) == {smart.pk: "reachable"}

    figures = health(smart)
    assert (figures.calls, figures.failures, figures.failures_in_a_row) == (5, 4, 0), "a success ends the run"
    assert figures.latency_ms is None, "a refusal's speed is not the deployment's latency"
    run(breakers.record(smart.pk, request_id="live-5", outcome=Outcome.FAILURE, now=NOW))
    assert health(smart).state is State.CLOSED


def test_a_probe_gives_up_within_the_providers_timeouts(db: None, upstream: FakeUpstream, smart: Deployment) -> None:
    Provider.objects.filter(pk=smart.provider_id).update(connect_timeout=0.2, read_timeout=0.3)
    # The answer comes after 3 s, well inside the probe's 10 s cap: a probe that
    # waited for it would say "ok". Only the provider's 0.5 s can make it fail.
    upstream.script(Behave(delay=3))
    assert PROBE_TIMEOUT_CAP_SECONDS > 3
    assert deployments_probe(now=NOW) == {smart.pk: "failed"}
    assert health(smart).failures == 1
    assert len(chat_requests(upstream)) == 1, "one attempt, not retried"


def test_a_credential_the_provider_refuses_is_flagged_by_the_probe(
    db: None, upstream: FakeUpstream, smart: Deployment
) -> None:
    upstream.script(Behave(status=401), Behave(status=403))
    assert deployments_probe(now=NOW) == {smart.pk: "refused"}
    credential = credential_of(smart)
    assert credential.flagged_at is not None
    assert credential.flag_reason == "refused by provider: 401"
    assert health(smart).failures == 1

    assert deployments_probe(now=NOW + 1) == {smart.pk: "refused"}
    again = credential_of(smart)
    assert (again.flagged_at, again.flag_reason) == (credential.flagged_at, credential.flag_reason), "idempotent"

    # The provider takes it again: the breaker hears so, the flag waits for an operator.
    assert deployments_probe(now=NOW + 2) == {smart.pk: "ok"}
    assert credential_of(smart).flagged_at == credential.flagged_at
    assert health(smart).failures_in_a_row == 0


def test_the_celery_task_runs_the_probes(db: None, upstream: FakeUpstream, smart: Deployment) -> None:
    assert tasks.probe_deployments.apply().get() == {smart.pk: "ok"}
    assert len(chat_requests(upstream)) == 1


def test_a_real_worker_probes_and_feeds_the_breaker(
    celery_worker: None, upstream: FakeUpstream, smart: Deployment
) -> None:
    tasks.probe_deployments.delay()

    deadline = time.monotonic() + 20
    while run(breakers.health([smart.pk]))[smart.pk].calls == 0:
        assert time.monotonic() < deadline, "the worker did not probe"
        time.sleep(0.1)
    assert run(breakers.health([smart.pk]))[smart.pk].latency_ms is not None
    assert len(chat_requests(upstream)) == 1


def test_a_live_request_refused_by_the_provider_flags_its_credential(
    gateway: Gateway, upstream: FakeUpstream, smart: Deployment
) -> None:
    upstream.script(Behave(status=401))
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)
    with pytest.raises(openai.InternalServerError) as refused:
        sdk.chat.completions.create(model="smart", messages=MESSAGES)
    assert refused.value.status_code == 502

    # Written off the request path: it lands shortly after the answer.
    deadline = time.monotonic() + 5
    while (credential := credential_of(smart)).flagged_at is None:
        assert time.monotonic() < deadline, "the refused credential was not flagged"
        time.sleep(0.05)
    assert credential.flag_reason == "refused by provider: 401"
    assert UPSTREAM_KEY not in credential.flag_reason


@pytest.fixture
def as_operator(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_superuser("ops@oneflow.local", "operator password 123"))
    return client


def test_the_admin_shows_and_clears_the_flag(as_operator: Client) -> None:
    provider = Provider.objects.create(name="OpenAI", kind=Provider.Kind.OPENAI, base_url="https://api.openai.com/v1")
    refused = Credential.objects.create(provider=provider, name="refused-key")
    Credential.objects.create(provider=provider, name="good-key")
    assert credential_flag(credential_id=refused.pk, reason="refused by provider: 403")
    changelist = reverse("admin:providers_credential_changelist")

    flagged = as_operator.get(changelist, {"flagged": "yes"}).content.decode()
    assert "refused-key" in flagged and "good-key" not in flagged
    assert "refused by provider: 403" in flagged
    assert "refused-key" not in as_operator.get(changelist, {"flagged": "no"}).content.decode()
    page = as_operator.get(reverse("admin:providers_credential_change", args=[refused.pk])).content.decode()
    assert "refused by provider: 403" in page
    assert "Never cleared automatically" in page

    response = as_operator.post(changelist, {"action": "clear_flag", "_selected_action": [refused.pk]}, follow=True)
    assert "Cleared the flag of 1 credential(s)." in response.content.decode()
    refused.refresh_from_db()
    assert (refused.flagged_at, refused.flag_reason) == (None, "")
    assert "refused-key" not in as_operator.get(changelist, {"flagged": "yes"}).content.decode()


def test_the_probe_schedule_is_seeded_every_30_seconds(db: None) -> None:
    schedule = PeriodicTask.objects.get(task="routing.probe_deployments")
    assert (schedule.interval.every, schedule.interval.period) == (30, "seconds")
    assert schedule.expire_seconds == 30, "a probe left in the queue past the next run is dropped"
    celery_app.loader.import_default_modules()
    assert "routing.probe_deployments" in celery_app.tasks
