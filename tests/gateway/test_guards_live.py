"""Rate limits and circuit breakers through the live gateway."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from pytest_django.fixtures import Settings

from accounts.models import Organization
from gateway.breakers import BreakerPolicy
from providers.models import Deployment, Provider
from tests.fakes import Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route
from tests.http import call

MESSAGES: Any = [{"role": "user", "content": "Hello"}]


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)


def status_of(gateway: Gateway, model: str = "smart") -> int:
    try:
        sdk(gateway).chat.completions.create(model=model, messages=MESSAGES, max_tokens=20)
    except openai.APIStatusError as error:
        return error.status_code
    return 200


def breaker_gauge(gateway: Gateway, deployment_id: int) -> float | None:
    text = call(gateway.server.url, "GET", "/metrics", headers={"Host": "localhost"}).body.decode()
    found = re.search(rf'^oneflow_breaker_state\{{deployment="{deployment_id}"\}} (\S+)$', text, flags=re.M)
    return float(found.group(1)) if found else None


def test_limits_admit_exactly_the_limit_and_say_so_in_headers(gateway: Gateway) -> None:
    # Per hour, so the quota does not come back (one every 6 minutes) while the burst runs.
    Organization.objects.filter(pk=gateway.key.key.organization_id).update(limit_rph=10)
    with ThreadPoolExecutor(max_workers=15) as pool:
        statuses = list(pool.map(lambda _: status_of(gateway, "gpt-4o-mini"), range(15)))
    assert sorted(statuses) == [200] * 10 + [429] * 5

    with pytest.raises(openai.RateLimitError) as refused:
        sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error: Any = refused.value
    headers = error.response.headers
    assert error.code == "rate_limit_exceeded"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("10", "0")
    assert '"org-rph";q=10;w=3600' in headers["ratelimit-policy"]


def test_streams_carry_the_rate_limit_headers(gateway: Gateway) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert raw.headers["x-ratelimit-limit-requests"] == "60", "the default: 60 requests a minute"
    assert raw.headers["x-ratelimit-remaining-requests"] == "59"
    assert "ratelimit" in raw.headers
    list(raw.parse())


def test_the_breaker_opens_lets_one_probe_through_and_closes(
    gateway: Gateway, upstream: FakeUpstream, settings: Settings
) -> None:
    settings.UPSTREAM_MAX_ATTEMPTS = 1
    settings.BREAKER_COOLDOWN_SECONDS = 1
    # The gateway read its breaker policy when it started; this one is the test's.
    gateway.server.gateway.breaker_policy = BreakerPolicy.from_settings()
    route(upstream, Provider.Kind.OPENAI)
    deployment = Deployment.objects.get(public_model__name="smart")
    upstream.script(*[Behave(status=500)] * 5)

    assert [status_of(gateway) for _ in range(5)] == [502] * 5
    assert breaker_gauge(gateway, deployment.pk) == 2, "open"
    assert status_of(gateway) == 503, "fails fast while open"
    assert len(upstream.requests) == 5, "without calling upstream"

    time.sleep(1.1)  # the cool-down passes: the next caller is the one probe
    upstream.script(Behave(delay=2))  # slow enough that all 20 arrive while it runs
    clients = [sdk(gateway) for _ in range(20)]
    barrier = threading.Barrier(20)

    def together(client: openai.OpenAI) -> int:
        barrier.wait()
        try:
            client.chat.completions.create(model="smart", messages=MESSAGES, max_tokens=20)
        except openai.APIStatusError as error:
            return error.status_code
        return 200

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(together, clients))
    assert sorted(statuses) == [200] + [503] * 19
    assert len(upstream.requests) == 6, "exactly one probe reached upstream"

    assert breaker_gauge(gateway, deployment.pk) == 0, "closed by the probe's success"
    assert status_of(gateway) == 200
    [*_, last] = gateway.events()
    assert last.status_code == 200
    assert Deployment.objects.get(pk=deployment.pk).enabled, "a breaker never touches the manual switch"


def test_a_deployment_out_of_provider_quota_goes_last(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)  # "smart" on fake-openai, priority 1
    Deployment.objects.filter(public_model__name="smart").update(rpm_quota=2)
    Deployment.objects.create(
        public_model=Deployment.objects.get(public_model__name="smart").public_model,
        provider=Provider.objects.get(name="Simulator"),
        upstream_model="sim",
        priority=2,
    )

    def provider() -> str:
        raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, max_tokens=20)
        return str(raw.headers["x-oneflow-provider"])

    assert [provider() for _ in range(3)] == ["fake-openai", "fake-openai", "Simulator"]
    assert len(upstream.requests) == 2, "the provider's 429 never had to happen"
