"""Operators configure providers in the admin; gateways see the change at once."""

from __future__ import annotations

import openai
import pytest
from django.test import Client
from django.urls import reverse

from billing.models import Price
from providers.models import Credential, Deployment, Provider, PublicModel
from tests.conftest import UPSTREAM_KEY
from tests.factories import ProviderFactory
from tests.fakes import Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route


def test_a_credential_is_write_only(as_operator: Client) -> None:
    provider = ProviderFactory.create(kind=Provider.Kind.OPENAI, base_url="https://api.openai.com/v1")
    response = as_operator.post(
        reverse("admin:providers_credential_add"),
        {"provider": provider.pk, "name": "main", "secret": "sk-very-secret-value", "status": "active"},
    )
    assert response.status_code == 302
    credential = Credential.objects.get()
    assert credential.sealed_secret
    assert "sk-very-secret-value" not in credential.sealed_secret
    page = as_operator.get(reverse("admin:providers_credential_change", args=[credential.pk])).content.decode()
    assert "sk-very-secret-value" not in page
    assert credential.sealed_secret not in page


def test_test_connection_reports_success_and_failure(as_operator: Client, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)
    deployment = Deployment.objects.get()
    changelist = reverse("admin:providers_deployment_changelist")
    ok = as_operator.post(changelist, {"action": "test_connection", "_selected_action": [deployment.pk]}, follow=True)
    assert "Answered in" in ok.content.decode()
    assert upstream.requests[0].json["max_tokens"] == 1
    upstream.script(Behave(status=401))
    failed = as_operator.post(
        changelist, {"action": "test_connection", "_selected_action": [deployment.pk]}, follow=True
    )
    assert "refused OneFlow&#x27;s credential" in failed.content.decode()
    assert UPSTREAM_KEY not in failed.content.decode()


def test_disabling_a_deployment_in_the_admin_takes_effect_on_the_next_request(
    as_operator: Client, gateway: Gateway
) -> None:
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=messages).choices  # type: ignore[arg-type]
    deployment = Deployment.objects.get(public_model__name="gpt-4o-mini", enabled=True)
    as_operator.post(
        reverse("admin:providers_deployment_changelist"), {"action": "disable", "_selected_action": [deployment.pk]}
    )
    with pytest.raises(openai.InternalServerError) as unavailable:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    assert unavailable.value.status_code == 503
    PublicModel.objects.filter(name="gpt-4o-mini").update(name="renamed")
    Price.objects.filter(public_model="gpt-4o-mini").update(public_model="renamed")
    as_operator.post(
        reverse("admin:providers_deployment_changelist"), {"action": "enable", "_selected_action": [deployment.pk]}
    )
    assert sdk.chat.completions.create(model="renamed", messages=messages).model == "renamed"  # type: ignore[arg-type]
