"""The first burst after a configuration change, in one worker: every request
is judged on the configuration it read, never on the one before the change.

Issue 11: when one request of a burst found the version moved, it marked the
worker's snapshots current before loading them; the requests whose holds had
been computed on the old snapshots then passed as current. A budget created
just before the burst was overspent, and the same race would serve a revoked
key or a disabled deployment.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from accounts import services as accounts_services
from accounts.models import Organization
from billing.holds import to_units
from billing.models import UsageEvent
from billing.selectors import price_book
from billing.services import budget_create, usage_drain
from gateway import reservations
from providers.models import Deployment
from providers.selectors import catalog_build
from providers.services import deployments_set_enabled
from tests.factories import ApiKeyFactory, CreditGrantFactory, OrganizationFactory
from tests.gateway.conftest import Gateway
from tests.http import Reply, call

BURST = 40
ROUNDS = 3
LOTS = 1_000_000  # requests a minute: these tests are about configuration, not limits
BODY = b'{"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]}'


def send(gateway: Gateway, key: str) -> Reply:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return call(gateway.server.url, "POST", "/v1/chat/completions", body=BODY, headers=headers)


def burst(gateway: Gateway, key: str, count: int = BURST) -> list[Reply]:
    """``count`` requests released together, so they reach the hold together."""
    barrier = threading.Barrier(count)

    def one(_: int) -> Reply:
        barrier.wait()
        return send(gateway, key)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def new_tenant(gateway: Gateway, name: str) -> tuple[Organization, accounts_services.IssuedSecret]:
    owner = gateway.key.key.created_by
    organization = OrganizationFactory.create(name=name, owner=owner, limit_rpm=LOTS, limit_rph=LOTS)
    CreditGrantFactory.create(organization=organization, amount=Decimal(1000))
    return organization, ApiKeyFactory.create(organization=organization, created_by=owner)


def rounds(test: Callable[[int], None]) -> None:
    for number in range(ROUNDS):
        test(number)


def test_a_budget_created_just_before_a_burst_is_never_exceeded(gateway: Gateway) -> None:
    def one_round(number: int) -> None:
        organization, key = new_tenant(gateway, f"Budget {number}")
        warm = send(gateway, key.raw)  # this worker now holds the configuration without the budget
        assert warm.status == 200
        each = Decimal(warm.headers["x-oneflow-cost"])
        limit = each * 6  # the warm-up's charge counts: the window has room for about five more
        budget_create(organization=organization, period="daily", limit=limit)

        replies = burst(gateway, key.raw)

        assert {r.status for r in replies} <= {200, 429}
        usage_drain()
        charged = UsageEvent.objects.filter(organization=organization).values_list("charged", flat=True)
        spent = sum(charged, Decimal(0))
        assert to_units(spent, round_up=True) <= to_units(limit, round_up=False), (
            f"round {number}: {spent} charged against a budget of {limit}"
        )
        assert any(r.status == 429 for r in replies)

    rounds(one_round)


def test_a_key_revoked_just_before_a_burst_serves_nothing(gateway: Gateway) -> None:
    def one_round(number: int) -> None:
        _, key = new_tenant(gateway, f"Revoked {number}")
        assert send(gateway, key.raw).status == 200
        accounts_services.api_key_revoke(key=key.key)

        replies = burst(gateway, key.raw)

        assert [r.status for r in replies] == [401] * BURST, f"round {number}"

    rounds(one_round)


def test_a_deployment_disabled_just_before_a_burst_gets_no_traffic(gateway: Gateway) -> None:
    def one_round(number: int) -> None:
        _, key = new_tenant(gateway, f"Disabled {number}")
        deployments = Deployment.objects.filter(public_model__name="gpt-4o-mini")
        deployments_set_enabled(deployments=deployments, enabled=True)
        assert send(gateway, key.raw).status == 200
        deployments_set_enabled(deployments=deployments, enabled=False)

        replies = burst(gateway, key.raw)

        assert [r.status for r in replies] == [503] * BURST, f"round {number}"
        assert {r.json()["error"]["code"] for r in replies} == {"model_unavailable"}

    rounds(one_round)


def test_a_budget_counts_the_charges_of_its_window_not_drained_yet(gateway: Gateway) -> None:
    """The warm-up request settled before the budget existed and is still in the
    stream: the window must count it, or the budget pays for one request twice."""
    organization, key = new_tenant(gateway, "Undrained")
    assert send(gateway, key.raw).status == 200
    model = catalog_build().find("gpt-4o-mini")
    assert model is not None
    bounds = reservations.request_bounds(body=json.loads(BODY), endpoint="chat")
    hold = reservations.worst_case_cost(
        bounds=bounds, model=model, organization_id=organization.pk, prices=price_book()
    )
    # Room for one more hold if the warm-up were forgotten, none once it counts.
    budget_create(organization=organization, period="daily", limit=hold)

    replies = burst(gateway, key.raw, 10)

    assert [r.status for r in replies] == [429] * 10
    usage_drain()
    spent = sum(UsageEvent.objects.filter(organization=organization).values_list("charged", flat=True), Decimal(0))
    assert 0 < spent <= hold


def test_a_limit_lowered_just_before_a_burst_holds(gateway: Gateway) -> None:
    def one_round(number: int) -> None:
        organization, key = new_tenant(gateway, f"Limited {number}")
        assert send(gateway, key.raw).status == 200
        Organization.objects.filter(pk=organization.pk).update(limit_rph=5)

        replies = burst(gateway, key.raw, 20)

        served = sum(r.status == 200 for r in replies)
        assert served <= 5, f"round {number}: {served} served under a limit of 5 an hour"
        assert {r.status for r in replies} <= {200, 429}

    rounds(one_round)
