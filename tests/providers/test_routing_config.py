"""Operators set each model's routing in the admin; the catalog hands it to the gateway."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError
from django.test import Client
from django.urls import reverse

from providers.models import Deployment, Provider, PublicModel
from providers.selectors import catalog_build
from tests.factories import CredentialFactory, DeploymentFactory, ProviderFactory, PublicModelFactory


@pytest.fixture
def simulator(db: None) -> Provider:
    return ProviderFactory.create(name="Simulator")


def public_model_form(**fields: Any) -> dict[str, Any]:
    """What the admin's add page posts: the model and an empty deployments inline."""
    return {
        "name": "smart",
        "aliases": "[]",
        "kind": "chat",
        "owned_by": "oneflow",
        "is_public": "on",
        "strategy": "priority",
        "max_latency_ms": "",
        "fallback_models": "",
        "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
        "deployments-TOTAL_FORMS": "0",
        "deployments-INITIAL_FORMS": "0",
        "deployments-MIN_NUM_FORMS": "0",
        "deployments-MAX_NUM_FORMS": "1000",
        **fields,
    }


def test_catalog_build_exposes_the_routing_fields(simulator: Provider) -> None:
    PublicModelFactory.create(name="backup")
    smart = PublicModelFactory.create(
        name="smart", strategy="cheapest", max_latency_ms=1200, fallback_models=["backup"]
    )
    DeploymentFactory.create(public_model=smart, provider=simulator, quality_score=87)
    catalog = catalog_build()
    view = catalog.find("smart")
    assert view is not None
    assert (view.strategy, view.max_latency_ms, view.fallback_models) == ("cheapest", 1200, ("backup",))
    (deployment,) = view.deployments
    assert (deployment.quality_score, deployment.model_name) == (87, "smart")
    backup = catalog.find("backup")
    assert backup is not None
    assert (backup.strategy, backup.max_latency_ms, backup.fallback_models) == ("priority", None, ())


def test_catalog_build_reads_the_catalog_in_two_queries(simulator: Provider, django_assert_num_queries: Any) -> None:
    openai = ProviderFactory.create(kind=Provider.Kind.OPENAI, base_url="https://api.openai.com/v1")
    credential = CredentialFactory.create(provider=openai, secret="sk-test-0123456789")
    for number in range(4):
        model = PublicModelFactory.create(name=f"model-{number}", fallback_models=["model-0"] if number else [])
        DeploymentFactory.create(public_model=model, provider=simulator)
        DeploymentFactory.create(public_model=model, provider=openai, credential=credential)
    with django_assert_num_queries(2):
        catalog = catalog_build()
    assert sum(len(model.deployments) for model in catalog.listed) == 8


def test_the_admin_saves_strategy_latency_bound_fallbacks_and_quality_scores(
    as_operator: Client, simulator: Provider
) -> None:
    PublicModelFactory.create(name="backup")
    PublicModelFactory.create(name="spare")
    response = as_operator.post(
        reverse("admin:providers_publicmodel_add"),
        public_model_form(
            strategy="cheapest",
            max_latency_ms="1500",
            fallback_models="spare\nbackup",
            **{
                "deployments-TOTAL_FORMS": "1",
                "deployments-0-provider": simulator.pk,
                "deployments-0-upstream_model": "smart-1",
                "deployments-0-priority": "1",
                "deployments-0-weight": "100",
                "deployments-0-quality_score": "80",
                "deployments-0-enabled": "on",
            },
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    smart = PublicModel.objects.get(name="smart")
    assert (smart.strategy, smart.max_latency_ms, smart.fallback_models) == ("cheapest", 1500, ["spare", "backup"])
    deployment = smart.deployments.get()
    assert deployment.quality_score == 80

    view = catalog_build().find("smart")
    assert view is not None
    assert view.fallback_models == ("spare", "backup")
    assert [d.quality_score for d in view.deployments] == [80]

    change_page = as_operator.get(reverse("admin:providers_publicmodel_change", args=[smart.pk])).content.decode()
    assert "spare\nbackup</textarea>" in change_page
    listing = as_operator.get(reverse("admin:providers_publicmodel_changelist")).content.decode()
    assert "spare, backup" in listing

    as_operator.post(
        reverse("admin:providers_deployment_change", args=[deployment.pk]),
        {
            "public_model": smart.pk,
            "provider": simulator.pk,
            "upstream_model": "smart-1",
            "priority": "1",
            "weight": "100",
            "quality_score": "35",
            "capabilities": "[]",
            "cost_input_per_1m": "0",
            "cost_cached_input_per_1m": "0",
            "cost_output_per_1m": "0",
            "enabled": "on",
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
        },
    )
    assert Deployment.objects.get(pk=deployment.pk).quality_score == 35


@pytest.mark.parametrize(
    ("fallbacks", "error"),
    [
        ("smart", "A model cannot fall back to itself."),
        ("backup, nowhere", "No public model is named nowhere."),
        ("backup\nbackup", "Each fallback model may be listed once."),
        ("embedder", "Not a chat model: embedder."),
    ],
)
def test_the_admin_refuses_fallbacks_that_cannot_serve(
    as_operator: Client, simulator: Provider, fallbacks: str, error: str
) -> None:
    PublicModelFactory.create(name="backup")
    PublicModelFactory.create(name="embedder", kind=PublicModel.Kind.EMBEDDING)
    response = as_operator.post(
        reverse("admin:providers_publicmodel_add"), public_model_form(fallback_models=fallbacks)
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["fallback_models"] == [error]
    assert not PublicModel.objects.filter(name="smart").exists()


def test_the_admin_refuses_a_quality_score_above_100(as_operator: Client, simulator: Provider) -> None:
    response = as_operator.post(
        reverse("admin:providers_publicmodel_add"),
        public_model_form(
            **{
                "deployments-TOTAL_FORMS": "1",
                "deployments-0-provider": simulator.pk,
                "deployments-0-upstream_model": "smart-1",
                "deployments-0-priority": "1",
                "deployments-0-weight": "100",
                "deployments-0-quality_score": "101",
            }
        ),
    )
    assert response.status_code == 200
    assert not PublicModel.objects.filter(name="smart").exists()


def test_the_database_refuses_an_unknown_strategy(db: None) -> None:
    with pytest.raises(IntegrityError):
        PublicModelFactory.create(strategy="random")


def test_the_database_refuses_a_quality_score_above_100(simulator: Provider) -> None:
    with pytest.raises(IntegrityError):
        DeploymentFactory.create(provider=simulator, quality_score=101)
