"""Operators compare a model's deployments (A/B arms) in the admin: requests,
failures, latency percentiles and cost per request over a recent window."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization, User
from billing.models import UsageEvent
from providers.models import Deployment, Provider, PublicModel, Strategy
from routing import selectors
from tests.factories import DeploymentFactory, ProviderFactory, PublicModelFactory, UsageEventFactory, UserFactory

ON_POSTGRESQL = connection.vendor == "postgresql"


@pytest.fixture(autouse=True)
def _ten_credits_per_usd(settings: Any) -> None:
    settings.CREDITS_PER_USD = Decimal(10)


@pytest.fixture
def model(db: None) -> PublicModel:
    """An A/B test: OpenAI takes 3 keys in 4, Anthropic the rest."""
    chat = PublicModelFactory.create(name="ab-chat", strategy=Strategy.WEIGHTED)
    openai = ProviderFactory.create(name="OpenAI", kind=Provider.Kind.OPENAI)
    anthropic = ProviderFactory.create(name="Anthropic", kind=Provider.Kind.ANTHROPIC)
    DeploymentFactory.create(public_model=chat, provider=openai, upstream_model="gpt-4o-mini", weight=75)
    DeploymentFactory.create(public_model=chat, provider=anthropic, upstream_model="claude-haiku", weight=25)
    return chat


def arm(model: PublicModel, provider: str) -> Deployment:
    return Deployment.objects.get(public_model=model, provider__name=provider)


def served(
    organization: Organization,
    model: PublicModel,
    deployment: Deployment | None,
    *,
    ago: timedelta = timedelta(minutes=5),
    status: int = 200,
    latency_ms: int = 100,
    ttft_ms: int | None = None,
    cost: str = "0",
    provider_cost_usd: str = "0",
) -> UsageEvent:
    """A usage event as the drain writes it."""
    return UsageEventFactory.create(
        organization=organization,
        endpoint="chat.completions",
        public_model=model.name,
        deployment_id=deployment.pk if deployment else None,
        provider=deployment.provider.name if deployment else "",
        stream=ttft_ms is not None,
        status_code=status,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        cost=Decimal(cost),
        provider_cost_usd=Decimal(provider_cost_usd),
        created_at=timezone.now() - ago,
    )


class _ArmsTable(HTMLParser):
    """The page's arms table: arm id -> column -> text."""

    def __init__(self) -> None:
        super().__init__()
        self.arms: dict[int, dict[str, str]] = {}
        self._arm: dict[str, str] | None = None
        self._column: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-arm"):
            self._arm = self.arms.setdefault(int(found["data-arm"] or 0), {})
        elif self._arm is not None and (column := found.get("data-col")):
            self._column = column
            self._arm[column] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._column = None
        elif tag == "tr":
            self._arm = None

    def handle_data(self, data: str) -> None:
        if self._arm is not None and self._column is not None:
            self._arm[self._column] = " ".join(f"{self._arm[self._column]} {data}".split())


def results_url(model: PublicModel) -> str:
    return reverse("admin:routing_routeresults_change", args=[model.pk])


def arms_on_page(client: Client, model: PublicModel, **query: str) -> dict[int, dict[str, str]]:
    response = client.get(results_url(model), query)
    assert response.status_code == 200
    table = _ArmsTable()
    table.feed(response.content.decode())
    return table.arms


def seed_ab_test(organization: Organization, model: PublicModel) -> None:
    """OpenAI: 101 requests, 100..1100 ms, 11 answered 500 and 4 answered 429 (and one 400, the caller's
    fault), every other one a stream (50..150 ms to first token), 1.245 credits and 0.0995 USD each.
    Anthropic: 21 requests, 200..1200 ms, 3 answered 503, 2 credits and 0.05 USD each."""
    openai, anthropic = arm(model, "OpenAI"), arm(model, "Anthropic")
    rows: list[tuple[Deployment, dict[str, Any]]] = []
    for i in range(101):
        status = 500 if i % 10 == 0 else 429 if i % 25 == 1 else 400 if i == 2 else 200
        ttft_ms = 50 + i if i % 2 == 0 else None
        rows.append((openai, {"status": status, "latency_ms": 100 + 10 * i, "ttft_ms": ttft_ms}))
    for i in range(21):
        rows.append((anthropic, {"status": 503 if i in (3, 9, 15) else 200, "latency_ms": 200 + 50 * i}))
    random.Random(6).shuffle(rows)  # noqa: S311 - the percentiles must not depend on the order rows arrived in
    costs = {openai.pk: ("1.245", "0.0995"), anthropic.pk: ("2", "0.05")}
    for deployment, row in rows:
        cost, provider_cost_usd = costs[deployment.pk]
        served(organization, model, deployment, cost=cost, provider_cost_usd=provider_cost_usd, **row)


def test_it_shows_each_arms_requests_errors_percentiles_and_cost(
    as_operator: Client, acme: Organization, model: PublicModel
) -> None:
    seed_ab_test(acme, model)
    served(acme, model, None, status=429)  # refused by a rate limit before routing: no arm's traffic

    response = as_operator.get(results_url(model))
    page = response.content.decode()
    arms = arms_on_page(as_operator, model)

    openai, anthropic = arm(model, "OpenAI"), arm(model, "Anthropic")
    assert list(arms) == [openai.pk, anthropic.pk]
    assert arms[openai.pk] == {
        "deployment": "OpenAI: gpt-4o-mini",
        "priority": "1",
        "weight": "75",
        "weight_share": "75.0%",
        "traffic_share": "82.8%",
        "requests": "101",
        "error_rate": "14.9% (15)",
        "p50": "600 ms",
        "p95": "1050 ms",
        "p99": "1090 ms",
        "ttft_p50": "100 ms",
        "cost": "1.25",  # 1.245 half-up
        "provider_cost": "0.10",
        "margin": "0.03",  # 0.1245 USD charged - 0.0995 USD paid = 0.025, half-up
    }
    assert arms[anthropic.pk] == {
        "deployment": "Anthropic: claude-haiku",
        "priority": "1",
        "weight": "25",
        "weight_share": "25.0%",
        "traffic_share": "17.2%",
        "requests": "21",
        "error_rate": "14.3% (3)",
        "p50": "700 ms",
        "p95": "1150 ms",
        "p99": "1190 ms",  # between the two slowest: 1150 + 0.8 * 50
        "ttft_p50": "—",
        "cost": "2.00",
        "provider_cost": "0.05",
        "margin": "0.15",
    }
    assert "Weighted (A/B split, sticky per key)" in page
    assert '<span id="total">122</span>' in page
    assert '<span id="unrouted">1</span>' in page


def test_the_window_defaults_to_a_day_and_can_be_an_hour_or_a_week(
    as_operator: Client, acme: Organization, model: PublicModel
) -> None:
    openai = arm(model, "OpenAI")
    for ago, latency_ms in [
        (timedelta(minutes=30), 100),
        (timedelta(hours=2), 300),
        (timedelta(hours=23, minutes=50), 500),
        (timedelta(days=3), 700),
        (timedelta(days=8), 900),
    ]:
        served(acme, model, openai, ago=ago, latency_ms=latency_ms)

    def shown(**query: str) -> tuple[str, str]:
        row = arms_on_page(as_operator, model, **query)[openai.pk]
        return row["requests"], row["p50"]

    assert shown(window="1h") == ("1", "100 ms")
    assert shown() == ("3", "300 ms")
    assert shown(window="24h") == ("3", "300 ms")
    assert shown(window="7d") == ("4", "400 ms")
    assert shown(window="30d") == ("3", "300 ms"), "an unknown window falls back to the default"


def test_idle_arms_and_fallbacks_get_their_own_rows(
    as_operator: Client, acme: Organization, model: PublicModel
) -> None:
    other = PublicModelFactory.create(name="other-chat")
    groq = ProviderFactory.create(name="Groq", kind=Provider.Kind.OPENAI_COMPATIBLE)
    backup = DeploymentFactory.create(public_model=other, provider=groq, upstream_model="llama")
    openai, anthropic = arm(model, "OpenAI"), arm(model, "Anthropic")
    served(acme, model, openai, status=502, latency_ms=100, cost="1")
    served(acme, model, backup, latency_ms=300, cost="3")
    served(acme, model, backup, latency_ms=500, cost="3")
    served(acme, other, backup, latency_ms=9000)  # other-chat's own traffic is not this model's

    arms = arms_on_page(as_operator, model)

    assert list(arms) == [openai.pk, anthropic.pk, backup.pk]
    assert arms[anthropic.pk]["requests"] == "0"
    assert arms[anthropic.pk]["p50"] == arms[anthropic.pk]["cost"] == arms[anthropic.pk]["traffic_share"] == "—"
    assert arms[openai.pk]["error_rate"] == "100.0% (1)"
    assert arms[backup.pk]["deployment"] == "Groq: llama fallback: serves other-chat"
    assert arms[backup.pk]["weight_share"] == "—", "a fallback's weight is not part of this model's split"
    assert (arms[backup.pk]["traffic_share"], arms[backup.pk]["p50"]) == ("66.7%", "400 ms")


def test_priority_splits_by_weight_among_the_best_live_deployments_and_other_strategies_do_not(
    as_operator: Client, model: PublicModel
) -> None:
    openai, anthropic = arm(model, "OpenAI"), arm(model, "Anthropic")
    mistral = DeploymentFactory.create(public_model=model, provider__kind=Provider.Kind.OPENAI_COMPATIBLE)
    Deployment.objects.filter(pk=anthropic.pk).update(priority=2)
    Deployment.objects.filter(pk=mistral.pk).update(priority=1, weight=25, enabled=False)

    def shares() -> dict[int, str]:
        return {pk: row["weight_share"] for pk, row in arms_on_page(as_operator, model).items()}

    PublicModel.objects.filter(pk=model.pk).update(strategy=Strategy.PRIORITY)
    assert shares() == {openai.pk: "100.0%", mistral.pk: "0.0%", anthropic.pk: "0.0%"}
    PublicModel.objects.filter(pk=model.pk).update(strategy=Strategy.CHEAPEST)
    assert shares() == {openai.pk: "—", mistral.pk: "—", anthropic.pk: "—"}


@pytest.mark.parametrize("shape", [(2, 1), (6, 40)], ids=["2 arms x 1 row", "6 arms x 40 rows"])
def test_the_page_runs_a_bounded_number_of_queries(
    as_operator: Client,
    acme: Organization,
    model: PublicModel,
    django_assert_max_num_queries: Any,
    shape: tuple[int, int],
) -> None:
    arms_count, rows_per_arm = shape
    provider = Provider.objects.get(name="OpenAI")
    fallback = PublicModelFactory.create(name="fallback-chat")
    DeploymentFactory.create_batch(arms_count - 2, public_model=fallback, provider=provider)
    for deployment in Deployment.objects.all():
        for i in range(rows_per_arm):
            served(acme, model, deployment, latency_ms=100 + i, ttft_ms=10 + i)
    served(acme, model, None, status=429)

    # Session, user, the model, the sums, the deployments; and the sample without percentile_cont.
    with django_assert_max_num_queries(5 if ON_POSTGRESQL else 6):
        response = as_operator.get(results_url(model), {"window": "7d"})

    assert response.status_code == 200
    assert len(response.context["rows"]) == arms_count


@pytest.mark.skipif(ON_POSTGRESQL, reason="PostgreSQL computes exact percentiles")
def test_without_percentile_cont_percentiles_come_from_each_arms_newest_requests(
    as_operator: Client, acme: Organization, model: PublicModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "SAMPLE_PER_ARM", 3)
    openai = arm(model, "OpenAI")
    for minutes, latency_ms in [(50, 9000), (40, 9000), (30, 100), (20, 200), (10, 300)]:
        served(acme, model, openai, ago=timedelta(minutes=minutes), latency_ms=latency_ms)

    response = as_operator.get(results_url(model))
    row = arms_on_page(as_operator, model)[openai.pk]

    assert (row["requests"], row["p50"], row["p99"]) == ("5", "200 ms", "298 ms")
    assert "newest 3 requests of each deployment" in response.content.decode()


@pytest.mark.skipif(not ON_POSTGRESQL, reason="percentile_cont is PostgreSQL's")
def test_the_sampled_percentiles_compute_what_percentile_cont_does(acme: Organization, model: PublicModel) -> None:
    openai = arm(model, "OpenAI")
    latencies = [(n * 7919) % 5000 + 1 for n in range(37)]  # scattered, unsorted
    for latency_ms in latencies:
        served(acme, model, openai, latency_ms=latency_ms)

    found = UsageEvent.objects.aggregate(
        **{f"p{f}": selectors.PercentileCont("latency_ms", fraction=f / 100) for f in (0, 7, 50, 95, 99, 100)}
    )

    for name, value in found.items():
        assert value == pytest.approx(selectors.percentile_cont(latencies, int(name[1:]) / 100))


@pytest.mark.skipif(not ON_POSTGRESQL, reason="percentile_cont is PostgreSQL's")
def test_on_postgresql_the_page_says_its_percentiles_are_exact(as_operator: Client, model: PublicModel) -> None:
    assert "Percentiles are exact" in as_operator.get(results_url(model)).content.decode()


def test_the_index_lists_every_model_with_a_link_to_its_results(as_operator: Client, model: PublicModel) -> None:
    page = as_operator.get(reverse("admin:routing_routeresults_changelist")).content.decode()
    assert f'href="{results_url(model)}"' in page
    assert as_operator.get(reverse("admin:routing_routeresults_changelist"), {"q": "ab-"}).status_code == 200


def test_only_staff_with_the_view_permission_see_results(client: Client, alice: User, model: PublicModel) -> None:
    url = results_url(model)
    assert client.get(url).status_code == 302, "anonymous: to the login page"
    client.force_login(alice)
    assert client.get(url).status_code == 302, "not staff: to the login page"

    staff = UserFactory.create(is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
    staff.user_permissions.set(Permission.objects.filter(codename="view_routeresults"))
    assert client.get(url).status_code == 200
    assert client.post(url, {"name": "renamed"}).status_code == 405
    assert PublicModel.objects.get(pk=model.pk).name == "ab-chat", "the results page never edits the model"


def test_an_unknown_model_is_not_found(as_operator: Client) -> None:
    assert as_operator.get(reverse("admin:routing_routeresults_change", args=[999_999])).status_code == 404
