"""A credential's env:/file: reference may only name a provider secret: OneFlow sends
its value to the provider's host, which staff choose. Checked on save and on use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse

from providers.models import Credential, Deployment, Provider
from providers.selectors import CredentialUnavailable, credential_resolve
from providers.services import deployment_test_connection
from tests.conftest import UPSTREAM_KEY
from tests.factories import CredentialFactory, ProviderFactory
from tests.fakes import FakeUpstream
from tests.gateway.test_adapters import route


@pytest.fixture
def provider(db: None) -> Provider:
    return ProviderFactory.create(name="OpenAI", kind=Provider.Kind.OPENAI, base_url="https://evil.example/v1")


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    root = tmp_path / "provider-secrets"
    root.mkdir()
    (root / "openai").write_text("sk-from-a-mounted-file\n")
    (tmp_path / "outside").write_text("not a provider secret")
    (root / "sneaky").symlink_to(tmp_path / "outside")
    return root


def add_in_admin(as_operator: Client, provider: Provider, reference: str) -> str:
    """Saves a credential in the admin; the page's text when it was refused, '' when saved."""
    response = as_operator.post(
        reverse("admin:providers_credential_add"),
        {"provider": provider.pk, "name": "main", "reference": reference, "status": "active"},
    )
    return "" if response.status_code == 302 else response.content.decode()


@pytest.mark.parametrize(
    ("reference", "named"),
    [
        ("env:JWT_SIGNING_KEY", "own secrets"),
        ("env:SECRET_KEY_FILE", "own secrets"),
        ("env:HOME", "ONEFLOW_PROVIDER_"),
        ("env:", "variable name"),
        ("file:/etc/passwd", "PROVIDER_SECRETS_DIR"),
        ("https://example.com/key", "env:NAME or file:/path"),
    ],
)
def test_the_admin_refuses_a_reference_outside_the_provider_secrets(
    as_operator: Client, provider: Provider, reference: str, named: str
) -> None:
    page = add_in_admin(as_operator, provider, reference)

    assert named in page
    assert not Credential.objects.exists()


def test_the_admin_accepts_the_prefix_and_the_listed_names(as_operator: Client, provider: Provider) -> None:
    assert add_in_admin(as_operator, provider, "env:ONEFLOW_PROVIDER_OPENAI_KEY") == ""
    Credential.objects.all().delete()
    assert "OPENAI_API_KEY" in settings.PROVIDER_SECRET_ENV_ALLOWED  # the demo catalog's reference
    assert add_in_admin(as_operator, provider, "env:OPENAI_API_KEY") == ""


@pytest.mark.parametrize(
    ("reference", "allowed"),
    [
        ("file:openai", True),
        ("file:{root}/openai", True),
        ("file:{root}/../outside", False),
        ("file:../outside", False),
        ("file:sneaky", False),  # a symlink out of the directory
        ("file:{root}", False),
    ],
)
def test_file_references_stay_inside_the_secrets_directory(
    as_operator: Client, provider: Provider, secrets_dir: Path, reference: str, allowed: bool
) -> None:
    with override_settings(PROVIDER_SECRETS_DIR=str(secrets_dir)):
        page = add_in_admin(as_operator, provider, reference.format(root=secrets_dir))

    assert (page == "") is allowed
    if not allowed:
        assert "outside PROVIDER_SECRETS_DIR" in page


def test_an_allowed_file_reference_resolves_to_its_value(provider: Provider, secrets_dir: Path) -> None:
    credential = CredentialFactory.create(provider=provider, reference="file:openai")
    with override_settings(PROVIDER_SECRETS_DIR=str(secrets_dir)):
        assert credential_resolve(credential) == "sk-from-a-mounted-file"


def test_a_disallowed_reference_saved_anyway_is_refused_on_use_without_its_value(provider: Provider) -> None:
    credential = CredentialFactory.create(provider=provider, reference="env:JWT_SIGNING_KEY")

    with pytest.raises(CredentialUnavailable) as refused:
        credential_resolve(credential)

    assert "env:JWT_SIGNING_KEY is one of OneFlow's own secrets" in str(refused.value)
    assert settings.JWT_SIGNING_KEY not in str(refused.value)


def test_a_symlink_swapped_after_saving_is_refused_on_use(provider: Provider, secrets_dir: Path) -> None:
    credential = CredentialFactory.create(provider=provider, reference="file:openai")
    (secrets_dir / "openai").unlink()
    (secrets_dir / "openai").symlink_to(secrets_dir.parent / "outside")

    with override_settings(PROVIDER_SECRETS_DIR=str(secrets_dir)), pytest.raises(CredentialUnavailable) as refused:
        credential_resolve(credential)
    assert "outside PROVIDER_SECRETS_DIR" in str(refused.value)


def test_oneflow_never_sends_a_disallowed_reference_upstream(
    db: None, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    route(upstream, Provider.Kind.OPENAI)
    deployment = Deployment.objects.select_related("credential", "provider", "public_model").get()
    assert deployment.credential is not None
    monkeypatch.setenv("LEAKED_SECRET", "value-that-must-stay-home")
    Credential.objects.update(reference="env:LEAKED_SECRET")
    deployment.credential.refresh_from_db()

    ok, message = deployment_test_connection(deployment=deployment)

    assert not ok
    assert "env:LEAKED_SECRET is not allowed" in message
    assert "value-that-must-stay-home" not in message
    assert upstream.requests == []

    monkeypatch.setenv("ONEFLOW_PROVIDER_FAKE", UPSTREAM_KEY)
    Credential.objects.update(reference="env:ONEFLOW_PROVIDER_FAKE")
    deployment.credential.refresh_from_db()
    ok, message = deployment_test_connection(deployment=deployment)
    assert ok, message
    assert UPSTREAM_KEY in " ".join(upstream.requests[0].headers.values())
    assert os.environ["LEAKED_SECRET"] not in " ".join(upstream.requests[0].headers.values())
