"""Rate limits: one atomic admission against every rule, corrections on completion,
headers in OpenAI's and the IETF's forms, and where the limits come from."""

from __future__ import annotations

import math
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.test import Client, override_settings
from django.urls import reverse

from accounts import selectors, services
from accounts.models import ApiKey, Organization, Plan, User
from accounts.selectors import KeyCredentials, RateLimits
from gateway import limits
from gateway.limits import (
    CONCURRENCY_LEASE_SECONDS,
    Demand,
    Kind,
    Rule,
    anthropic_limit_headers,
    limit_headers,
    openai_duration,
    quota_rules,
    refusal,
    rules_for,
)
from oneflow.lib import config_version, redis, redis_keys
from oneflow.lib.scripts import Invocation
from providers.adapters.base import Target
from providers.selectors import DeploymentView
from tests.redis_state import both_ways, forget, fresh, run

NOW = 1_800_000_000.0  # a frozen clock: every call below passes it explicitly


_no_counters = fresh(redis_keys.LIMIT_PATTERN)


def rpm(limit: int, scope: str = "org") -> Rule:
    return Rule(f"{scope}-rpm", redis_keys.limit(scope, 1, "rpm"), Kind.REQUESTS, limit, 60)


def output_tpm(limit: int) -> Rule:
    return Rule("org-output-tpm", redis_keys.limit("org", 1, "output_tpm"), Kind.OUTPUT_TOKENS, limit, 60)


def concurrency(limit: int) -> Rule:
    return Rule("org-concurrency", redis_keys.limit("org", 1, "concurrency"), Kind.CONCURRENCY, limit, 0)


def admit_many(rules: list[Rule], count: int, *, now: float | None = None) -> list[bool]:
    """``count`` threads released at once, each admitting one request through its own connection."""
    barrier = threading.Barrier(count)
    admitted: list[bool] = []

    def one(index: int) -> None:
        barrier.wait()
        admitted.append(run(limits.admit(rules, Demand(), request_id=f"r{index}", now=now)).admitted)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return admitted


# Admission -----------------------------------------------------------------------------------


def test_it_admits_exactly_the_limit_out_of_n_plus_5_concurrent_requests() -> None:
    # Redis's own clock: at 20/min the quota comes back one request per 3 s,
    # far slower than the threads take.
    admitted = admit_many([rpm(20)], 25)
    assert admitted.count(True) == 20


def test_it_admits_exactly_the_limit_of_the_tightest_rule_and_counts_only_those() -> None:
    key, org = rpm(12, scope="key"), rpm(1000)
    admitted = admit_many([key, org], 17, now=NOW)
    assert admitted.count(True) == 12
    after = run(limits.admit([org], Demand(), request_id="peek", now=NOW))
    assert after.states[0].remaining == 1000 - 12 - 1, "the five refused requests were not counted by the org"


def test_a_refusal_by_any_rule_counts_nothing_anywhere() -> None:
    rules = [rpm(100), output_tpm(1000), concurrency(5)]
    assert run(limits.admit(rules, Demand(output_tokens=600), request_id="a", now=NOW)).admitted
    refused = run(limits.admit(rules, Demand(output_tokens=600), request_id="b", now=NOW))
    assert not refused.admitted
    assert [state.rule.name for state in refused.refused] == ["org-output-tpm"]
    assert [state.remaining for state in refused.states] == [99, 400, 4], "b took nothing"
    assert redis.sync_client().zrange(concurrency(5).key, 0, -1) == [b"a"]


def test_the_quota_comes_back_continuously_at_the_limits_rate() -> None:
    rules = [rpm(60)]
    assert all(run(limits.admit(rules, Demand(), request_id=f"r{i}", now=NOW)).admitted for i in range(60))
    refused = run(limits.admit(rules, Demand(), request_id="r60", now=NOW))
    assert not refused.admitted
    assert refused.retry_after == 1.0
    assert not run(limits.admit(rules, Demand(), request_id="r60", now=NOW + 0.999)).admitted
    assert run(limits.admit(rules, Demand(), request_id="r60", now=NOW + 1)).admitted
    later = run(limits.admit(rules, Demand(), request_id="r61", now=NOW + 61))
    assert (later.states[0].remaining, later.states[0].reset) == (59, 1.0), "a minute later the quota is whole"


def test_an_hourly_limit_holds_beside_the_minute_one() -> None:
    rph = Rule("org-rph", redis_keys.limit("org", 1, "rph"), Kind.REQUESTS, 5, 3600)
    rules = [rpm(60), rph]
    results = [run(limits.admit(rules, Demand(), request_id=f"r{i}", now=NOW + i * 61)).admitted for i in range(6)]
    assert results == [True] * 5 + [False], "each minute is fresh, the hour is not"


def test_input_tokens_count_the_prompt_estimate() -> None:
    rule = Rule("org-input-tpm", redis_keys.limit("org", 1, "input_tpm"), Kind.INPUT_TOKENS, 1000, 60)
    assert run(limits.admit([rule], Demand(input_tokens=700), request_id="a", now=NOW)).admitted
    refused = run(limits.admit([rule], Demand(input_tokens=400), request_id="b", now=NOW))
    assert not refused.admitted
    assert refused.retry_after == pytest.approx(6.0), "100 tokens over, at 1000/min"


def test_a_request_larger_than_a_token_limit_can_never_fit() -> None:
    decision = run(limits.admit([output_tpm(1000)], Demand(output_tokens=4096), request_id="a", now=NOW))
    assert not decision.admitted
    assert decision.too_large
    error = refusal(decision)
    assert (error.status, error.code, error.type) == (429, "rate_limit_exceeded", "tokens")
    assert error.headers["x-should-retry"] == "false"
    assert "Request too large for org-output-tpm" in error.message
    both = run(limits.admit([concurrency(0), output_tpm(1000)], Demand(output_tokens=4096), request_id="b", now=NOW))
    assert "Request too large for org-output-tpm" in refusal(both).message, "the rule that can never fit is named"


# Concurrency and completion ------------------------------------------------------------------


def test_concurrency_slots_are_released_on_completion() -> None:
    rules = [concurrency(2)]
    assert run(limits.admit(rules, Demand(), request_id="a", now=NOW)).admitted
    assert run(limits.admit(rules, Demand(), request_id="b", now=NOW)).admitted
    assert not run(limits.admit(rules, Demand(), request_id="c", now=NOW)).admitted
    assert run(limits.complete(rules, request_id="a", counted=Demand(), used=Demand(), now=NOW)) == 1
    assert run(limits.admit(rules, Demand(), request_id="c", now=NOW)).admitted
    assert run(limits.complete(rules, request_id="a", counted=Demand(), used=Demand(), now=NOW)) == 0, "released once"


def test_a_request_admitted_again_keeps_its_one_slot() -> None:
    rules = [concurrency(1)]
    assert run(limits.admit(rules, Demand(), request_id="a", now=NOW)).admitted
    again = run(limits.admit(rules, Demand(), request_id="a", now=NOW))
    assert again.admitted
    assert again.states[0].remaining == 0
    assert redis.sync_client().zcard(rules[0].key) == 1


def test_slots_of_requests_that_died_expire_after_their_lease() -> None:
    rules = [concurrency(1)]
    assert run(limits.admit(rules, Demand(), request_id="died", now=NOW)).admitted
    assert not run(limits.admit(rules, Demand(), request_id="b", now=NOW + CONCURRENCY_LEASE_SECONDS - 1)).admitted
    assert run(limits.admit(rules, Demand(), request_id="b", now=NOW + CONCURRENCY_LEASE_SECONDS)).admitted
    assert redis.sync_client().zrange(rules[0].key, 0, -1) == [b"b"]
    assert redis.sync_client().pttl(rules[0].key) > 0, "an idle pool leaves no key behind"


def test_output_tokens_are_corrected_to_the_actual_count() -> None:
    rules = [output_tpm(1000), concurrency(5)]
    assert run(limits.admit(rules, Demand(output_tokens=800), request_id="a", now=NOW)).admitted
    assert not run(limits.admit(rules, Demand(output_tokens=800), request_id="b", now=NOW)).admitted
    run(
        limits.complete(
            rules, request_id="a", counted=Demand(output_tokens=800), used=Demand(output_tokens=100), now=NOW
        )
    )
    decision = run(limits.admit(rules, Demand(output_tokens=800), request_id="b", now=NOW))
    assert decision.admitted
    assert decision.states[0].remaining == 100


def test_output_beyond_what_was_counted_is_taken_on_completion() -> None:
    rules = [output_tpm(1000)]
    run(limits.admit(rules, Demand(output_tokens=100), request_id="a", now=NOW))
    run(
        limits.complete(
            rules, request_id="a", counted=Demand(output_tokens=100), used=Demand(output_tokens=1100), now=NOW
        )
    )
    refused = run(limits.admit(rules, Demand(output_tokens=1), request_id="b", now=NOW))
    assert not refused.admitted
    assert refused.retry_after == pytest.approx(6.06), "101 tokens of debt drain at 1000/min"


def test_the_gateways_asyncio_side_runs_the_same_scripts() -> None:
    rules = [rpm(2), output_tpm(1000), concurrency(1)]

    invocations: list[Invocation[Any]] = [
        limits.admit(rules, Demand(output_tokens=500), request_id="a", now=NOW),
        limits.admit(rules, Demand(output_tokens=100), request_id="b", now=NOW),
        limits.complete(
            rules, request_id="a", counted=Demand(output_tokens=500), used=Demand(output_tokens=0), now=NOW
        ),
        limits.admit(rules, Demand(output_tokens=1000), request_id="b", now=NOW),
    ]
    synced, (first, busy, released, second) = both_ways(invocations, between=lambda: forget(redis_keys.LIMIT_PATTERN))
    assert [first.admitted, busy.admitted, released == 1, second.admitted] == [True, False, True, True]
    assert [first, busy, released, second] == synced, "the synchronous client reads the same replies"
    assert not run(limits.admit(rules, Demand(), request_id="c", now=NOW)).admitted, "both requests counted"


# Provider quotas -----------------------------------------------------------------------------


def deployment(pk: int, *, rpm_quota: int | None = None, tpm_quota: int | None = None) -> DeploymentView:
    target = Target(deployment_id=pk, provider_name="p", kind="openai", base_url="", upstream_model="m", api_key="")
    zero = Decimal(0)
    return DeploymentView(pk, target, 1, 100, (), zero, zero, zero, rpm_quota, tpm_quota)


def test_deployments_without_quota_headroom_are_reported_and_counting_always_counts() -> None:
    small, tokens, free = deployment(91, rpm_quota=2), deployment(92, tpm_quota=1000), deployment(93)
    demand = Demand(input_tokens=300, output_tokens=400)
    assert run(limits.headroom([small, tokens, free], demand, now=NOW)) == {91: True, 92: True, 93: True}
    for request in ("a", "b", "c"):
        run(limits.count(small, demand, request_id=request, now=NOW))
    run(limits.count(tokens, demand, request_id="a", now=NOW))
    assert run(limits.headroom([small, tokens, free], demand, now=NOW)) == {91: False, 92: False, 93: True}
    assert run(limits.headroom([small, tokens], Demand(input_tokens=300), now=NOW + 60)) == {91: True, 92: True}


def test_quota_rules_follow_the_deployment() -> None:
    rules = quota_rules(deployment(7, rpm_quota=500, tpm_quota=90_000))
    assert [(r.name, r.kind, r.limit, r.window) for r in rules] == [
        ("deployment-rpm", Kind.REQUESTS, 500, 60),
        ("deployment-tpm", Kind.TOKENS, 90_000, 60),
    ]


# Pipelining ----------------------------------------------------------------------------------


def test_the_admit_script_runs_in_a_pipeline_beside_other_commands() -> None:
    rules = [rpm(1)]
    admission = limits.admit(rules, Demand(), request_id="a", now=NOW)
    assert admission.script is not None
    with redis.sync_client().pipeline(transaction=False) as pipe:
        pipe.get(redis_keys.CONFIG_VERSION)
        pipe.eval(admission.script.source, len(admission.keys), *admission.keys, *admission.args)
        pipe.eval(admission.script.source, len(admission.keys), *admission.keys, *admission.args)
        _, first, second = pipe.execute()
    assert admission.reply(first).admitted
    assert not admission.reply(second).admitted


# Headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.02, "20ms"),
        (0.0171, "18ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (59.999, "59.999s"),
        (360, "6m0s"),
        (90.25, "1m30.25s"),
        (3600, "1h0m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_reset_durations_are_written_as_openai_does(seconds: float, text: str) -> None:
    assert openai_duration(seconds) == text


def test_headers_report_the_rule_met_first_in_both_forms() -> None:
    rph = Rule("org-rph", redis_keys.limit("org", 1, "rph"), Kind.REQUESTS, 1000, 3600)
    rules = [rpm(60), rph, output_tpm(10_000), concurrency(4)]
    demand = Demand(output_tokens=500)
    for request in range(12):
        assert run(limits.admit(rules, demand, request_id=f"r{request}", now=NOW)).admitted
        run(limits.complete(rules, request_id=f"r{request}", counted=demand, used=demand, now=NOW))
    headers = limit_headers(run(limits.admit(rules, demand, request_id="last", now=NOW)))
    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "47",
        "x-ratelimit-reset-requests": "13s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "3500",
        "x-ratelimit-reset-tokens": "39s",
        "ratelimit-policy": '"org-rpm";q=60;w=60, "org-rph";q=1000;w=3600, '
        '"org-concurrency";q=4;qu="concurrent-requests"',
        "ratelimit": '"org-rpm";r=47;t=13, "org-rph";r=987;t=47, "org-concurrency";r=3',
    }


def test_a_refusal_says_when_to_retry_at_most_a_minute_ahead() -> None:
    rph = Rule("org-rph", redis_keys.limit("org", 1, "rph"), Kind.REQUESTS, 1, 3600)
    run(limits.admit([rph], Demand(), request_id="a", now=NOW))
    refused = run(limits.admit([rph], Demand(), request_id="b", now=NOW + 0.5))
    assert refused.retry_after == pytest.approx(3599.5)
    headers = limit_headers(refused)
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("60", "60000")
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["ratelimit"] == '"org-rph";r=0;t=3600'
    error = refusal(refused)
    assert (error.status, error.type, error.code) == (429, "requests", "rate_limit_exceeded")
    assert "x-should-retry" not in error.headers


def test_anthropic_clients_get_their_own_headers_with_rfc_3339_resets() -> None:
    rules = [rpm(60), output_tpm(1000)]
    decision = run(limits.admit(rules, Demand(output_tokens=500), request_id="a", now=NOW))
    assert anthropic_limit_headers(decision) == {
        "anthropic-ratelimit-requests-limit": "60",
        "anthropic-ratelimit-requests-remaining": "59",
        "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:01Z",
        "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "500",
        "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:30Z",
    }
    refused = run(limits.admit(rules, Demand(output_tokens=600), request_id="b", now=NOW))
    assert anthropic_limit_headers(refused)["retry-after"] == "6"


def test_a_full_concurrency_pool_asks_for_a_retry_in_a_second() -> None:
    run(limits.admit([concurrency(1)], Demand(), request_id="a", now=NOW))
    refused = run(limits.admit([concurrency(1)], Demand(), request_id="b", now=NOW))
    assert refused.retry_after is None
    assert limit_headers(refused)["retry-after"] == "1"
    assert "x-ratelimit-limit-requests" not in limit_headers(refused), "concurrency is not a rate"


def test_sub_second_waits_round_up() -> None:
    rules = [rpm(60)]
    reply = [0, int(NOW * 1000), 0, 60_000, 0, 17]
    decision = limits.admit(rules, Demand(), request_id="r", now=NOW).reply(reply)
    assert math.isclose(decision.retry_after or 0, 0.017)
    assert limit_headers(decision)["retry-after"] == "1"
    assert limit_headers(decision)["retry-after-ms"] == "1000"


# Where limits come from ----------------------------------------------------------------------


def credentials_of(issued: services.IssuedSecret) -> KeyCredentials:
    found = selectors.api_key_credentials(prefix=issued.secret.prefix)
    assert found is not None
    return found


@override_settings(RATE_LIMIT_DEFAULT_RPM=60, RATE_LIMIT_DEFAULT_RPH=1000)
def test_effective_limits_resolve_key_then_organization_then_plan_then_defaults(
    acme: Organization, acme_key: services.IssuedSecret
) -> None:
    assert credentials_of(acme_key).org_limits == RateLimits(rpm=60, rph=1000)
    assert credentials_of(acme_key).key_limits == RateLimits()

    acme.plan = Plan.objects.create(name="Pro", rpm=600, input_tpm=100_000, concurrency=20)
    acme.save()
    assert credentials_of(acme_key).org_limits == RateLimits(rpm=600, rph=1000, input_tpm=100_000, concurrency=20)

    acme.limit_rpm, acme.limit_output_tpm = 900, 50_000
    acme.save()
    assert credentials_of(acme_key).org_limits == RateLimits(
        rpm=900, rph=1000, input_tpm=100_000, output_tpm=50_000, concurrency=20
    )

    ApiKey.objects.filter(pk=acme_key.key.pk).update(limit_rpm=30, limit_concurrency=2)
    credentials = credentials_of(acme_key)
    assert credentials.key_limits == RateLimits(rpm=30, concurrency=2), "the key scope is only what the key sets"
    assert [(rule.name, rule.limit) for rule in rules_for(credentials)] == [
        ("key-rpm", 30),
        ("key-concurrency", 2),
        ("org-rpm", 900),
        ("org-rph", 1000),
        ("org-input-tpm", 100_000),
        ("org-output-tpm", 50_000),
        ("org-concurrency", 20),
    ]
    key_rule = rules_for(credentials)[0]
    assert key_rule.key == f"oneflow:limit:key:{acme_key.key.pk}:rpm"
    assert rules_for(credentials)[2].key == f"oneflow:limit:org:{acme.pk}:rpm", "shared by all the org's keys"


@override_settings(RATE_LIMIT_DEFAULT_RPM=5, RATE_LIMIT_DEFAULT_RPH=7)
def test_the_platform_defaults_come_from_settings(acme_key: services.IssuedSecret) -> None:
    assert credentials_of(acme_key).org_limits == RateLimits(rpm=5, rph=7)


@pytest.fixture
def as_operator(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_superuser("ops@oneflow.local", "operator password 123"))
    return client


def version() -> object:
    return redis.sync_client().get(config_version.KEY)


def test_limit_edits_in_the_admin_reach_the_gateway_through_the_configuration_version(
    as_operator: Client, acme: Organization, acme_key: services.IssuedSecret, django_capture_on_commit_callbacks
) -> None:
    assert site.is_registered(Plan)
    before = version()
    with django_capture_on_commit_callbacks(execute=True):
        response = as_operator.post(
            reverse("admin:accounts_plan_add"), {"name": "Team", "rpm": "120", "rph": "", "concurrency": "8"}
        )
    assert response.status_code == 302
    after_plan = version()
    assert after_plan != before

    change = reverse("admin:accounts_organization_change", args=[acme.pk])
    form = {
        "name": acme.name,
        "slug": acme.slug,
        "time_zone": "UTC",
        "plan": Plan.objects.get(name="Team").pk,
        "limit_rph": "5000",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert as_operator.post(change, form).status_code == 302
    assert version() != after_plan
    assert credentials_of(acme_key).org_limits == RateLimits(rpm=120, rph=5000, concurrency=8)
    assert (
        "limit_rph" in as_operator.get(reverse("admin:accounts_apikey_change", args=[acme_key.key.pk])).content.decode()
    )


def test_a_limit_of_zero_is_refused_by_the_admin(as_operator: Client) -> None:
    response = as_operator.post(reverse("admin:accounts_plan_add"), {"name": "Broken", "rpm": "0"})
    assert response.status_code == 200
    assert not Plan.objects.filter(name="Broken").exists()
